//! The one way devbox reports an error: once, on stderr, then each cause only when its text
//! adds something to what was printed.

pub fn print_error(program: &str, error: &dyn std::error::Error) {
    let mut printed = error.to_string();
    eprintln!("{program}: error: {printed}");
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !printed.contains(&text) {
            eprintln!("  caused by: {text}");
            printed = text;
        }
        source = cause.source();
    }
}
