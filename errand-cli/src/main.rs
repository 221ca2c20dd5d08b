//! The `errand` command. All logic lives in the `errand_cli` library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    errand_cli::init_tracing();
    let cli = errand_cli::Cli::parse();
    match errand_cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
