//! The `swarmbridge` binary: parse the command line, run the library.

fn main() -> std::process::ExitCode {
    swarmbridge::cli::main()
}
