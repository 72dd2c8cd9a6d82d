//! The `stackwave` binary: parses the command line and hands over to the library.

use clap::Parser;

/// Rendering allocates many small nodes; mimalloc is markedly faster at that than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = stackwave::cli::Cli::parse();
    std::process::exit(stackwave::cli::run(cli));
}
