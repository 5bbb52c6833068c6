//! trail: front command; `trail sort ...` runs `trail-sort ...`.
fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match trail::cli::run_front(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("trail: error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
