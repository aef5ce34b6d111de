use clap::Parser;

fn main() -> std::process::ExitCode {
    novart::cli::run(novart::cli::Cli::parse())
}
