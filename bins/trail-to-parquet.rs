//! trail-to-parquet: write a trail stream as Parquet (a file or a Hive-partitioned dataset).
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = trail::to_parquet::Args::parse();
    trail::cli::run_tool("trail-to-parquet", || trail::to_parquet::run(&args))
}
