//! One node on smol: the same API as on tokio.
//!
//! ```sh
//! cargo run -p beethoven-examples --bin smol_node -- --name a --bind 127.0.0.1:7201
//! cargo run -p beethoven-examples --bin smol_node -- --name b --bind 127.0.0.1:7202 --seed 127.0.0.1:7201
//! ```
//!
//! Prints node updates; `--for SECONDS` leaves gracefully and exits after that long.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use beethoven_smol::{Config, NodeName, Options, Seed, Update};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "A Beethoven node on the smol runtime")]
struct Args {
    /// This node's name.
    #[arg(long)]
    name: String,
    /// Address to bind (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: std::net::SocketAddr,
    /// Seed to join through (`ip:port` or `cidr:port`); repeatable.
    #[arg(long)]
    seed: Vec<Seed>,
    /// Cluster name; nodes of other clusters are ignored.
    #[arg(long, default_value = "beethoven")]
    cluster: String,
    /// Leave and exit after this many seconds.
    #[arg(long = "for")]
    run_for: Option<u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    smol::block_on(async {
        let mut options = Options::new(NodeName::new(&args.name)?)
            .config(Config::for_cluster(&args.cluster).with_rng_seed(std::process::id().into()))
            .bind(args.bind);
        for seed in args.seed {
            options = options.seed(seed);
        }
        let node = beethoven_smol::start(options).await?;
        println!("{} listening on {}", node.name(), node.local_addr());
        // The join began at start, on the node's own thread: the stream first
        // tells the nodes already online when the node applies the subscription,
        // then every change after it, so a node met meanwhile is never missed.
        // (Subscribing, then reading the table, raced: the subscription is
        // applied on the node's thread, maybe after the read and after the meeting.)
        let mut updates = node.subscribe_with_current();
        let listen = async {
            while let Some(update) = updates.recv().await {
                match update {
                    Update::Node {
                        node: other,
                        status,
                    } => {
                        println!("{other} is {status} (mode {})", node.mode());
                    }
                    Update::Lagged { missed } => println!("missed {missed} updates"),
                    _ => {}
                }
            }
        };
        match args.run_for {
            Some(seconds) => {
                let deadline = async {
                    smol::Timer::after(Duration::from_secs(seconds)).await;
                };
                smol::future::or(listen, deadline).await;
            }
            None => listen.await,
        }
        node.leave().await?;
        println!("{} nodes online when leaving", node.active_nodes().len());
        node.shutdown().await;
        Ok(())
    })
}
