// An option given a value of the wrong form is an error on that value; an option written as a
// list is an error on the whole option.
use taskscope::{Cancelled, scoped};

#[scoped(name = fetch)]
async fn name_not_a_string() -> Result<(), Cancelled> {
    Ok(())
}

#[scoped(crate = taskscope)]
async fn crate_not_a_string() -> Result<(), Cancelled> {
    Ok(())
}

#[scoped(crate = "not a path")]
async fn crate_not_a_path() -> Result<(), Cancelled> {
    Ok(())
}

#[scoped(timeout = 2)]
async fn duration_not_a_string() -> Result<(), Cancelled> {
    Ok(())
}

#[scoped(timeout("2s"))]
async fn option_as_a_list() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
