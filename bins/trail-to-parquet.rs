//! trail-to-parquet: write a trail stream as Parquet (a file or a Hive-partitioned dataset).
use clap::Parser;

/// Write trail events as Parquet for DuckDB, pandas/polars, Spark and Trino: one row per event,
/// dissected packet fields as columns, sorted by time, zstd-compressed, with statistics and page
/// indexes. Memory stays bounded (row groups encoded in parallel while input keeps flowing).
#[derive(Parser)]
#[command(name = "trail-to-parquet", version)]
struct Cli {
    #[command(flatten)]
    args: trail::to_parquet::ParquetArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    trail::cli::run_tool("trail-to-parquet", || trail::to_parquet::run(&cli.args))
}
