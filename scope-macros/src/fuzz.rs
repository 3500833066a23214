//! Property test: both expanders, fed 20,000 arbitrary token streams, never panic, and their
//! output is either a compile error (next to the original item, for `#[scoped]`) or
//! well-formed Rust whenever the input was.

use std::panic::{AssertUnwindSafe, catch_unwind};

use proc_macro2::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const IDENTS: &[&str] = &[
    "async",
    "fn",
    "move",
    "break",
    "continue",
    "loop",
    "while",
    "for",
    "in",
    "return",
    "timeout",
    "name",
    "crate",
    "deadline",
    "grace",
    "s",
    "x",
    "self",
    "Self",
    "Result",
    "Option",
    "u32",
    "impl",
    "where",
    "pub",
    "let",
    "Ok",
    "Some",
    "None",
    "if",
    "else",
    "match",
    "await",
    "dyn",
    "local",
    "supervise",
    "limit",
];

const PUNCTS: &[&str] = &[
    "=", ",", "|", "||", "->", "=>", "'", ":", "::", ";", "?", "<", ">", "&", ".", "#", "!", "*",
    "+", "-",
];

/// Valid and invalid duration literals, plus a few that are neither.
static DURATIONS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let mut all: Vec<&str> = crate::duration::ACCEPTED.iter().map(|(t, _)| *t).collect();
    all.extend_from_slice(crate::duration::REJECTED);
    all.extend_from_slice(&["µs", "x::y", "1 1s"]);
    all
});

fn punct(text: &str) -> Vec<TokenTree> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let spacing = if i + 1 < chars.len() || c == '\'' {
                Spacing::Joint
            } else {
                Spacing::Alone
            };
            TokenTree::Punct(Punct::new(c, spacing))
        })
        .collect()
}

fn ident(rng: &mut Rng) -> TokenTree {
    let name = rng.pick(IDENTS);
    let ident = if name == "self" || name == "Self" || name == "crate" {
        Ident::new(name, Span::call_site())
    } else if rng.chance(8) {
        Ident::new(&format!("{name}_{}", rng.below(3)), Span::call_site())
    } else {
        Ident::new(name, Span::call_site())
    };
    TokenTree::Ident(ident)
}

fn literal(rng: &mut Rng) -> TokenTree {
    TokenTree::Literal(match rng.below(4) {
        0 | 1 => Literal::string(rng.pick(&DURATIONS)),
        2 => Literal::u32_unsuffixed(rng.below(100) as u32),
        _ => Literal::string(rng.pick(&["x", "a::b", "1bad", "my_reexport::taskscope", ""])),
    })
}

fn random_stream(rng: &mut Rng, depth: usize, max_len: usize) -> TokenStream {
    let len = rng.below(max_len + 1);
    let mut out = Vec::new();
    for _ in 0..len {
        match rng.below(10) {
            0..=3 => out.push(ident(rng)),
            4..=6 => out.extend(punct(rng.pick(PUNCTS))),
            7 => out.push(literal(rng)),
            _ if depth > 0 => {
                let delim =
                    rng.pick(&[Delimiter::Parenthesis, Delimiter::Bracket, Delimiter::Brace]);
                let inner = random_stream(rng, depth - 1, max_len / 2 + 1);
                out.push(TokenTree::Group(Group::new(delim, inner)));
            }
            _ => out.push(ident(rng)),
        }
    }
    out.into_iter().collect()
}

fn parse(s: &str) -> TokenStream {
    s.parse().unwrap()
}

const OPTIONS: &[&str] = &[
    "s",
    "t",
    "a::b",
    "list(1)",
    "name = \"x\"",
    "name = 1",
    "grace = \"100ms\"",
    "grace = d",
    "crate = \"::taskscope\"",
    "crate = \"1bad\"",
    "crate = x",
    "deadline = at",
    "bogus = 1",
    "timeout = Duration::from_secs(1)",
    "timeout = 5",
];

const RETURNS: &[&str] = &[
    "",
    "-> Result<u32, E>",
    "-> Option<u32>",
    "-> u32",
    "-> ()",
    "-> Result<impl Display, E>",
    "-> Option<impl Display>",
    "-> std::result::Result<(), E>",
    "-> <T as X>::Result",
    "-> impl Future<Output = u32>",
];

const BODIES: &[&str] = &[
    "Ok(1)",
    "None",
    "1",
    "",
    "return Ok(1);",
    "x?; Some(1)",
    "let v = s.spawn(async { Ok(()) }); v.await?; Ok(())",
    "loop { break; }",
    "if a { return None; } Some(2)",
    "async move { 1 }.await",
    "'l: loop { break 'l 3; }",
];

fn options(rng: &mut Rng) -> TokenStream {
    if rng.chance(4) {
        return random_stream(rng, 2, 6);
    }
    let mut parts = Vec::new();
    for _ in 0..rng.below(4) {
        if rng.chance(3) {
            parts.push(format!("timeout = \"{}\"", rng.pick(&DURATIONS)));
        } else {
            parts.push((rng.pick(OPTIONS)).to_owned());
        }
    }
    let mut s = parts.join(", ");
    if rng.chance(5) {
        s.push(',');
    }
    parse(&s)
}

fn body(rng: &mut Rng) -> TokenStream {
    if rng.chance(3) {
        random_stream(rng, 3, 8)
    } else {
        parse(rng.pick(BODIES))
    }
}

fn item(rng: &mut Rng) -> TokenStream {
    if rng.chance(4) {
        return random_stream(rng, 3, 10);
    }
    let asyncness = if rng.chance(6) { "" } else { "async" };
    let params = rng.pick(&[
        "",
        "x: u32",
        "&self",
        "&mut self, a: impl Fn()",
        "self",
        "<'a>",
    ]);
    let (generics, params) = if params == "<'a>" {
        ("<'a, T: Send>", "v: &'a T")
    } else {
        ("", params)
    };
    let ret = rng.pick(RETURNS);
    let head = format!("{asyncness} fn f{generics}({params}) {ret}");
    let mut out = parse(&head);
    if rng.chance(10) {
        out.extend(parse(";"));
    } else {
        out.extend([TokenTree::Group(Group::new(Delimiter::Brace, body(rng)))]);
    }
    out
}

fn scope_input(rng: &mut Rng) -> TokenStream {
    if rng.chance(4) {
        return random_stream(rng, 3, 10);
    }
    let mut out = options(rng);
    if !out.is_empty() {
        out.extend(parse(","));
    }
    let b = TokenTree::Group(Group::new(Delimiter::Brace, body(rng)));
    match rng.below(4) {
        0 => out.extend([b]),
        1 => {
            out.extend(parse("|s|"));
            out.extend([b]);
        }
        2 => {
            out.extend(parse("move |s| -> Result<u32, E>"));
            out.extend([b]);
        }
        _ => out.extend(random_stream(rng, 2, 5)),
    }
    out
}

fn has_compile_error(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "compile_error",
        TokenTree::Group(g) => has_compile_error(&g.stream()),
        _ => false,
    })
}

/// The last top-level brace group: the `scope!` body or the function's body.
fn last_brace(tokens: &TokenStream) -> Option<Group> {
    tokens
        .clone()
        .into_iter()
        .filter_map(|tt| match tt {
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => Some(g),
            _ => None,
        })
        .last()
}

/// `Ok(true)` if the expansion is a compile error.
fn check_scoped(attr: TokenStream, item: TokenStream) -> Result<bool, String> {
    let out = catch_unwind(AssertUnwindSafe(|| {
        crate::scoped::expand(attr.clone(), item.clone())
    }))
    .map_err(|_| "panicked".to_owned())?;
    if has_compile_error(&out) {
        // The function is still emitted, in front of the errors (M6): unchanged, or (an
        // error in the options only) expanded with the valid options, its signature kept.
        if out.to_string().starts_with(&item.to_string()) {
            return Ok(true);
        }
        let same_signature = match (
            syn::parse2::<syn::ItemFn>(item.clone()),
            syn::parse2::<syn::File>(out.clone()),
        ) {
            (Ok(f), Ok(file)) => file.items.first().is_some_and(|first| match first {
                // Compared as tokens (syn's `PartialEq` needs its `extra-traits`).
                syn::Item::Fn(g) => {
                    let head = |f: &syn::ItemFn| {
                        let (attrs, vis, sig) = (&f.attrs, &f.vis, &f.sig);
                        quote::quote!(#(#attrs)* #vis #sig).to_string()
                    };
                    head(g) == head(&f)
                }
                _ => false,
            }),
            // A body that does not parse is kept as raw tokens: compare the tokens in front
            // of it.
            _ => {
                let head: TokenStream = item
                    .clone()
                    .into_iter()
                    .take_while(|tt| {
                        !matches!(tt, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace)
                    })
                    .collect();
                // Token spacing differs between re-emitted and original tokens (`<'a`).
                let squash = |s: String| s.split_whitespace().collect::<String>();
                squash(out.to_string()).starts_with(&squash(head.to_string()))
            }
        };
        if !same_signature {
            return Err(format!("the function is not emitted: {out}"));
        }
        return Ok(true);
    }
    if syn::parse2::<syn::Item>(out.clone()).is_ok() {
        return Ok(false);
    }
    // A malformed body is kept as raw tokens, for the compiler to report on them.
    let body_ok = last_brace(&item)
        .is_some_and(|g| syn::parse2::<syn::Block>(TokenTree::Group(g).into()).is_ok());
    let item_ok = syn::parse2::<syn::Item>(item.clone()).is_ok();
    if body_ok && item_ok {
        return Err(format!("a valid item expanded to invalid tokens: {out}"));
    }
    Ok(false)
}

fn check_scope(input: TokenStream) -> Result<(), String> {
    let out = catch_unwind(AssertUnwindSafe(|| crate::block::expand(input.clone())))
        .map_err(|_| "panicked".to_owned())?;
    if has_compile_error(&out) || syn::parse2::<syn::Expr>(out.clone()).is_ok() {
        return Ok(());
    }
    let body_ok = last_brace(&input)
        .is_none_or(|g| syn::parse2::<syn::Block>(TokenTree::Group(g).into()).is_ok());
    if body_ok {
        return Err(format!("a valid body expanded to invalid tokens: {out}"));
    }
    Ok(())
}

#[test]
fn expanders_never_panic_and_emit_errors_or_valid_rust() {
    const CASES: usize = 20_000;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut failures = Vec::new();
    let (mut expanded, mut errors) = (0usize, 0usize);
    for case in 0..CASES {
        let (attr, it) = (options(&mut rng), item(&mut rng));
        let input = scope_input(&mut rng);
        let scoped = check_scoped(attr.clone(), it.clone());
        match scoped {
            Ok(true) => errors += 1,
            Ok(false) => expanded += 1,
            Err(_) => {}
        }
        for (what, r) in [
            ("#[scoped]", scoped.map(|_| ())),
            ("scope!", check_scope(input.clone())),
        ] {
            if let Err(why) = r {
                failures.push(format!(
                    "case {case} {what}: {why}\n  attr: {attr}\n  item: {it}\n  input: {input}"
                ));
            }
        }
    }
    std::panic::set_hook(hook);
    assert!(
        expanded > CASES / 20 && errors > CASES / 20,
        "the generator reaches both outcomes: {expanded} expanded, {errors} errors"
    );
    assert!(
        failures.is_empty(),
        "{} failures, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
