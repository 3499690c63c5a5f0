use std::time::Duration;
use beethoven_testkit::{Fault, Formation, Sim};
#[test]
fn scratch() {
    let mut sim = Sim::builder().nodes(10).seed(1).formation(Formation::Split).build().unwrap();
    sim.run_for(Duration::from_secs(5));
    sim.apply(Fault::Join { node: 7, through: vec![2] });
    for step in 0..80 {
        sim.run_for(Duration::from_millis(100));
        let sizes: Vec<String> = (0..10).map(|i| { let n = sim.node(i).unwrap(); format!("{}/{}", n.active_nodes().count(), n.tracker().len()) }).collect();
        eprintln!("{:>4} {}", step, sizes.join(" "));
    }
}
