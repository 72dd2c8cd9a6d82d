//! The `stackwave` binary: parses the command line and hands over to the library.

use clap::Parser;

fn main() {
    let cli = stackwave::cli::Cli::parse();
    std::process::exit(stackwave::cli::run(cli));
}
