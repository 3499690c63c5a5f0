//! Subscribing to node changes, both ways the original's users know:
//! a type implementing [`NodeUpdate`] (the Elixir behaviour's `node_update/2`
//! callback, given to `alert_me`), and an async stream (`subscribe`).
//!
//! ```sh
//! cargo run -p beethoven-examples --bin subscriber
//! ```
//!
//! Starts three nodes in-process; node-0 subscribes both ways; node-2 leaves.

#![allow(clippy::print_stdout)]

use std::sync::Mutex;
use std::time::Duration;

use beethoven_tokio::{Config, NodeName, NodeStatus, NodeUpdate, Options, Seed, Update};

/// Like a module implementing the original's behaviour: remembers who is up.
#[derive(Default)]
struct Inventory {
    online: Mutex<Vec<String>>,
}

impl NodeUpdate for Inventory {
    fn node_update(&self, node: &NodeName, status: NodeStatus) {
        let mut online = self
            .online
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match status {
            NodeStatus::Online => online.push(node.to_string()),
            NodeStatus::Offline => online.retain(|n| n != node.as_str()),
        }
        println!("  callback: {node} is {status}; known online: {online:?}");
    }
}

// One thread is plenty: each node runs on a thread of its own.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::for_cluster("subscriber-demo");
    let first = beethoven_tokio::start(
        Options::new(NodeName::new("node-0")?)
            .config(config.clone())
            .bind("127.0.0.1:0".parse()?),
    )
    .await?;
    // 1. the callback form
    first.alert_me(Inventory::default())?;
    // 2. the stream form
    let mut updates = first.subscribe();
    let stream = tokio::spawn(async move {
        let mut seen = 0;
        while let Some(update) = updates.recv().await {
            if let Update::Node { node, status } = update {
                println!("  stream:   {node} is {status}");
                seen += 1;
                if seen == 3 {
                    break; // node-1 and node-2 online, then node-2 offline
                }
            }
        }
    });
    let seed = Seed::Addr(first.local_addr());
    let mut others = Vec::new();
    for i in 1..3 {
        let options = Options::new(NodeName::new(&format!("node-{i}"))?)
            .config(config.clone())
            .bind("127.0.0.1:0".parse()?)
            .seed(seed.clone());
        others.push(beethoven_tokio::start(options).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leaving = others.pop().expect("two others started");
    leaving.leave().await?;
    leaving.shutdown().await;
    tokio::time::timeout(Duration::from_secs(10), stream).await??;
    println!("mode of node-0: {}", first.mode());
    Ok(())
}
