//! The `errand` command. All logic lives in the `errand_cli` library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    errand_cli::init_tracing();
    let cli = errand_cli::Cli::parse();
    match errand_cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A reader that went away (`errand jobs list | head`) is not an error.
        Err(errand_cli::CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
