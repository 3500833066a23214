use taskscope::scoped;

#[derive(Debug)]
struct MyError;

#[scoped]
async fn fails() -> Result<u32, MyError> {
    Err(MyError)
}

fn main() {}
