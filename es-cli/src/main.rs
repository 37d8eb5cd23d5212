//! `es`: look inside an es store. `es --help` lists the commands.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    es_cli::main_with(es_cli::Rebuilds::new()).await
}
