//! Values in the code form: each written as the Rust expression that makes it
//! and read back ([`Code`]), the errors of reading, and the replay command.
//! Below the scenario's own form (`code.rs`), so a timeline or a violation can
//! print a fault or a command without depending on the runner.

use std::fmt::Write as _;
use std::time::Duration;

use beethoven_core::{ClusterId, Config, Tags};

use super::parse::{self, Expr};
use crate::fault::{Fault, HostFate};
use crate::network::{LinkRule, NetworkModel};

/// Why a text is not the code form of a scenario: what and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a scenario's code form: {0}")]
pub struct CodeError(pub(super) String);

pub(super) fn error<T>(message: impl Into<String>) -> Result<T, CodeError> {
    Err(CodeError(message.into()))
}

/// The cluster name of a scenario's default config.
pub(super) const CLUSTER: &str = "prop";

/// The `beethoven-sim` command that replays a scenario written as `code`.
pub(crate) fn command(code: &str) -> String {
    format!("beethoven-sim --case '{}'", code.replace('\'', r"'\''"))
}

pub(super) fn one(args: &[Expr]) -> Result<&Expr, CodeError> {
    match args {
        [arg] => Ok(arg),
        _ => error(format!("expected one argument, got {}", args.len())),
    }
}

/// Whether `path` ends with `tail` (`beethoven_testkit::Fault::Crash` ends with `Fault::Crash`).
pub(super) fn ends(path: &[String], tail: &[&str]) -> bool {
    path.len() >= tail.len()
        && path[path.len() - tail.len()..]
            .iter()
            .zip(tail)
            .all(|(a, b)| a == b)
}

/// A value written as the Rust expression that makes it, and read back.
pub(super) trait Code {
    fn write(&self, out: &mut String);
    fn read(expr: &Expr) -> Result<Self, CodeError>
    where
        Self: Sized;
}

macro_rules! integer_code {
    ($($t:ty),*) => {$(
        impl Code for $t {
            fn write(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
            fn read(expr: &Expr) -> Result<Self, CodeError> {
                match expr {
                    Expr::Int(n) => <$t>::try_from(*n)
                        .or_else(|_| error(format!("{n} is out of range"))),
                    _ => error(format!("expected an integer, got {expr:?}")),
                }
            }
        }
    )*};
}
integer_code!(u64, usize, u32);

impl Code for f64 {
    fn write(&self, out: &mut String) {
        // `Debug` is the shortest text that reads back as the same number, with
        // a `.0` or exponent that keeps it a float literal.
        let _ = write!(out, "{self:?}");
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        match expr {
            Expr::Float(x) => Ok(*x),
            Expr::Int(n) => Ok(*n as f64),
            _ => error(format!("expected a number, got {expr:?}")),
        }
    }
}

impl Code for bool {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        match expr {
            Expr::Path(p) if ends(p, &["true"]) => Ok(true),
            Expr::Path(p) if ends(p, &["false"]) => Ok(false),
            _ => error(format!("expected true or false, got {expr:?}")),
        }
    }
}

impl Code for Duration {
    fn write(&self, out: &mut String) {
        let nanos = self.as_nanos();
        let units = [(1_000_000_000, "secs"), (1_000_000, "ms"), (1_000, "us")];
        let (per, unit) = units
            .into_iter()
            .find(|(per, _)| nanos.is_multiple_of(*per))
            .unwrap_or((1, "ns"));
        let _ = write!(out, "{unit}({})", nanos / per);
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        let per: u64 = match expr {
            Expr::Path(p) if ends(p, &["Duration", "ZERO"]) => return Ok(Duration::ZERO),
            Expr::Call(p, _) => match p.last().map(String::as_str) {
                Some("secs" | "from_secs") => 1_000_000_000,
                Some("ms" | "from_millis") => 1_000_000,
                Some("us" | "from_micros") => 1_000,
                Some("ns" | "from_nanos") => 1,
                _ => return error(format!("expected a duration, got {expr:?}")),
            },
            _ => return error(format!("expected a duration, got {expr:?}")),
        };
        let Expr::Call(_, args) = expr else {
            return error("expected a duration");
        };
        let n = u64::read(one(args)?)?;
        Ok(Duration::from_nanos(n.saturating_mul(per)))
    }
}

impl<T: Code> Code for Option<T> {
    fn write(&self, out: &mut String) {
        match self {
            None => out.push_str("None"),
            Some(value) => {
                out.push_str("Some(");
                value.write(out);
                out.push(')');
            }
        }
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        match expr {
            Expr::Path(p) if ends(p, &["None"]) => Ok(None),
            Expr::Call(p, args) if ends(p, &["Some"]) => Ok(Some(T::read(one(args)?)?)),
            _ => error(format!("expected None or Some(..), got {expr:?}")),
        }
    }
}

impl<T: Code> Code for Vec<T> {
    fn write(&self, out: &mut String) {
        out.push_str("vec![");
        for (k, item) in self.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            item.write(out);
        }
        out.push(']');
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        match expr {
            Expr::Array(items) => items.iter().map(T::read).collect(),
            _ => error(format!("expected a list, got {expr:?}")),
        }
    }
}

impl<A: Code, B: Code> Code for (A, B) {
    fn write(&self, out: &mut String) {
        out.push('(');
        self.0.write(out);
        out.push_str(", ");
        self.1.write(out);
        out.push(')');
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        match expr {
            Expr::Tuple(items) => match items.as_slice() {
                [a, b] => Ok((A::read(a)?, B::read(b)?)),
                _ => error(format!("expected a pair, got {expr:?}")),
            },
            _ => error(format!("expected a pair, got {expr:?}")),
        }
    }
}

impl Code for ClusterId {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "ClusterId({})", self.0);
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        match expr {
            Expr::Call(p, args) if ends(p, &["ClusterId"]) => Ok(ClusterId(u64::read(one(args)?)?)),
            Expr::Call(p, args) if ends(p, &["ClusterId", "from_name"]) => match one(args)? {
                Expr::Str(name) => Ok(ClusterId::from_name(name)),
                other => error(format!("expected a name, got {other:?}")),
            },
            _ => error(format!("expected ClusterId(..), got {expr:?}")),
        }
    }
}

impl Code for HostFate {
    fn write(&self, out: &mut String) {
        out.push_str(match self {
            HostFate::StaysUp => "HostFate::StaysUp",
            HostFate::Vanishes => "HostFate::Vanishes",
        });
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        match expr {
            Expr::Path(p) if ends(p, &["HostFate", "StaysUp"]) => Ok(HostFate::StaysUp),
            Expr::Path(p) if ends(p, &["HostFate", "Vanishes"]) => Ok(HostFate::Vanishes),
            _ => error(format!("expected a HostFate, got {expr:?}")),
        }
    }
}

impl Code for Tags {
    fn write(&self, out: &mut String) {
        if self.is_empty() {
            out.push_str("Tags::new()");
            return;
        }
        out.push_str("Tags::from_pairs([");
        for (k, (key, value)) in self.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "({key:?}, {value:?})");
        }
        out.push_str("]).unwrap()");
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        let expr = match expr {
            Expr::Method(inner, name, _) if name == "unwrap" || name == "expect" => inner,
            other => other,
        };
        match expr {
            Expr::Call(p, args) if ends(p, &["Tags", "new"]) && args.is_empty() => Ok(Tags::new()),
            Expr::Call(p, args) if ends(p, &["Tags", "from_pairs"]) => {
                let Expr::Array(pairs) = one(args)? else {
                    return error("expected Tags::from_pairs([(key, value), ..])");
                };
                let pairs = pairs
                    .iter()
                    .map(|pair| match pair {
                        Expr::Tuple(kv) => match kv.as_slice() {
                            [Expr::Str(k), Expr::Str(v)] => Ok((k.as_str(), v.as_str())),
                            _ => error("expected a (key, value) pair of strings"),
                        },
                        _ => error("expected a (key, value) pair"),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Tags::from_pairs(pairs).or_else(|e| error(format!("invalid tags: {e}")))
            }
            _ => error(format!("expected tags, got {expr:?}")),
        }
    }
}

/// The named fields of a struct literal, read one by one.
struct Fields<'a>(&'a [(String, Expr)]);

impl Fields<'_> {
    fn get<T: Code>(&self, name: &str) -> Result<T, CodeError> {
        match self.0.iter().find(|(field, _)| field == name) {
            Some((_, value)) => T::read(value),
            None => error(format!("missing field `{name}`")),
        }
    }
}

/// Writes `path { a: .., b: .. }` (or `path` alone without fields).
fn write_struct(out: &mut String, path: &str, fields: &[(&str, &dyn Code)]) {
    out.push_str(path);
    if fields.is_empty() {
        return;
    }
    out.push_str(" { ");
    for (k, (name, value)) in fields.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{name}: ");
        value.write(out);
    }
    out.push_str(" }");
}

impl Code for LinkRule {
    fn write(&self, out: &mut String) {
        let LinkRule {
            blocked,
            loss,
            extra_latency,
        } = self;
        let fields: [(&str, &dyn Code); 3] = [
            ("blocked", blocked),
            ("loss", loss),
            ("extra_latency", extra_latency),
        ];
        write_struct(out, "LinkRule", &fields);
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        match expr {
            Expr::Struct(p, fields, None) if ends(p, &["LinkRule"]) => {
                let f = Fields(fields);
                Ok(LinkRule {
                    blocked: f.get("blocked")?,
                    loss: f.get("loss")?,
                    extra_latency: f.get("extra_latency")?,
                })
            }
            _ => error(format!("expected a LinkRule {{ .. }}, got {expr:?}")),
        }
    }
}

impl Code for NetworkModel {
    fn write(&self, out: &mut String) {
        let lan = NetworkModel::lan();
        let NetworkModel {
            latency,
            jitter,
            loss,
            duplicate,
            reorder,
            reorder_delay,
        } = self;
        let all: [(&str, &dyn Code, bool); 6] = [
            ("latency", latency, *latency != lan.latency),
            ("jitter", jitter, *jitter != lan.jitter),
            ("loss", loss, *loss != lan.loss),
            ("duplicate", duplicate, *duplicate != lan.duplicate),
            ("reorder", reorder, *reorder != lan.reorder),
            (
                "reorder_delay",
                reorder_delay,
                *reorder_delay != lan.reorder_delay,
            ),
        ];
        let differ: Vec<(&str, &dyn Code)> =
            all.iter().filter(|f| f.2).map(|f| (f.0, f.1)).collect();
        if differ.is_empty() {
            out.push_str("NetworkModel::lan()");
            return;
        }
        write_struct(out, "NetworkModel", &differ);
        // `write_struct` closed the literal: reopen it for the base.
        out.truncate(out.len() - 2);
        out.push_str(", ..NetworkModel::lan() }");
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        match expr {
            Expr::Call(p, args)
                if (ends(p, &["NetworkModel", "lan"]) || ends(p, &["NetworkModel", "default"]))
                    && args.is_empty() =>
            {
                Ok(NetworkModel::lan())
            }
            Expr::Method(base, name, args) => {
                let base = NetworkModel::read(base)?;
                match name.as_str() {
                    "with_latency" => Ok(base.with_latency(Duration::read(one(args)?)?)),
                    "with_loss" => Ok(base.with_loss(f64::read(one(args)?)?)),
                    _ => error(format!("no NetworkModel builder `.{name}`")),
                }
            }
            Expr::Struct(p, fields, Some(base)) if ends(p, &["NetworkModel"]) => {
                let mut model = NetworkModel::read(base)?;
                for (name, value) in fields {
                    match name.as_str() {
                        "latency" => model.latency = Duration::read(value)?,
                        "jitter" => model.jitter = Duration::read(value)?,
                        "loss" => model.loss = f64::read(value)?,
                        "duplicate" => model.duplicate = f64::read(value)?,
                        "reorder" => model.reorder = f64::read(value)?,
                        "reorder_delay" => model.reorder_delay = Duration::read(value)?,
                        other => return error(format!("NetworkModel has no field `{other}`")),
                    }
                }
                Ok(model)
            }
            _ => error(format!("expected a NetworkModel, got {expr:?}")),
        }
    }
}

impl Code for Fault {
    fn write(&self, out: &mut String) {
        // Every variant is written here: a new one does not compile until it is.
        match self {
            Fault::Crash { node, host } => {
                write_struct(out, "Fault::Crash", &[("node", node), ("host", host)]);
            }
            Fault::Restart { node, new_addr } => {
                write_struct(
                    out,
                    "Fault::Restart",
                    &[("node", node), ("new_addr", new_addr)],
                );
            }
            Fault::Pause { node, duration } => {
                write_struct(
                    out,
                    "Fault::Pause",
                    &[("node", node), ("duration", duration)],
                );
            }
            Fault::Slow {
                node,
                per_event,
                duration,
            } => write_struct(
                out,
                "Fault::Slow",
                &[
                    ("node", node),
                    ("per_event", per_event),
                    ("duration", duration),
                ],
            ),
            Fault::Leave { node } => write_struct(out, "Fault::Leave", &[("node", node)]),
            Fault::Start { node } => write_struct(out, "Fault::Start", &[("node", node)]),
            Fault::Partition { groups } => {
                write_struct(out, "Fault::Partition", &[("groups", groups)]);
            }
            Fault::OneWay { from, to } => {
                write_struct(out, "Fault::OneWay", &[("from", from), ("to", to)]);
            }
            Fault::Link { from, to, rule } => write_struct(
                out,
                "Fault::Link",
                &[("from", from), ("to", to), ("rule", rule)],
            ),
            Fault::Delay { node, min, max } => write_struct(
                out,
                "Fault::Delay",
                &[("node", node), ("min", min), ("max", max)],
            ),
            Fault::Loss { loss } => write_struct(out, "Fault::Loss", &[("loss", loss)]),
            Fault::Join { node, through } => {
                write_struct(out, "Fault::Join", &[("node", node), ("through", through)]);
            }
            Fault::StartTwin { node, of } => {
                write_struct(out, "Fault::StartTwin", &[("node", node), ("of", of)]);
            }
            Fault::SetTags { node, tags } => {
                write_struct(out, "Fault::SetTags", &[("node", node), ("tags", tags)]);
            }
            Fault::Brownout {
                loss,
                duration,
                links,
            } => write_struct(
                out,
                "Fault::Brownout",
                &[("loss", loss), ("duration", duration), ("links", links)],
            ),
            Fault::Heal => out.push_str("Fault::Heal"),
        }
    }
    fn read(expr: &Expr) -> Result<Self, CodeError> {
        let (path, fields) = match expr {
            Expr::Struct(path, fields, None) => (path, fields.as_slice()),
            Expr::Path(path) => (path, &[][..]),
            _ => return error(format!("expected a fault, got {expr:?}")),
        };
        let variant = match path.as_slice() {
            [.., ty, variant] if ty == "Fault" => variant.as_str(),
            _ => {
                return error(format!(
                    "expected Fault::<variant>, got {}",
                    path.join("::")
                ));
            }
        };
        let f = Fields(fields);
        Ok(match variant {
            "Crash" => Fault::Crash {
                node: f.get("node")?,
                host: f.get("host")?,
            },
            "Restart" => Fault::Restart {
                node: f.get("node")?,
                new_addr: f.get("new_addr")?,
            },
            "Pause" => Fault::Pause {
                node: f.get("node")?,
                duration: f.get("duration")?,
            },
            "Slow" => Fault::Slow {
                node: f.get("node")?,
                per_event: f.get("per_event")?,
                duration: f.get("duration")?,
            },
            "Leave" => Fault::Leave {
                node: f.get("node")?,
            },
            "Start" => Fault::Start {
                node: f.get("node")?,
            },
            "Partition" => Fault::Partition {
                groups: f.get("groups")?,
            },
            "OneWay" => Fault::OneWay {
                from: f.get("from")?,
                to: f.get("to")?,
            },
            "Link" => Fault::Link {
                from: f.get("from")?,
                to: f.get("to")?,
                rule: f.get("rule")?,
            },
            "Delay" => Fault::Delay {
                node: f.get("node")?,
                min: f.get("min")?,
                max: f.get("max")?,
            },
            "Loss" => Fault::Loss {
                loss: f.get("loss")?,
            },
            "Join" => Fault::Join {
                node: f.get("node")?,
                through: f.get("through")?,
            },
            "StartTwin" => Fault::StartTwin {
                node: f.get("node")?,
                of: f.get("of")?,
            },
            "SetTags" => Fault::SetTags {
                node: f.get("node")?,
                tags: f.get("tags")?,
            },
            "Brownout" => Fault::Brownout {
                loss: f.get("loss")?,
                duration: f.get("duration")?,
                links: f.get("links")?,
            },
            "Heal" => Fault::Heal,
            other => return error(format!("no fault `Fault::{other}`")),
        })
    }
}

/// The fault as the code form writes it (for timelines and reports).
pub(crate) fn fault_code(fault: &Fault) -> String {
    let mut out = String::new();
    fault.write(&mut out);
    out
}

/// The config fields the code form writes: every one but the key ring (which
/// holds secrets and has no literal form).
macro_rules! config_fields {
    ($($field:ident),* $(,)?) => {
        /// `(field, value)` of every written field where `config` differs from `base`.
        fn config_diff(config: &Config, base: &Config) -> Vec<(&'static str, String)> {
            let mut diff = Vec::new();
            $(
                if config.$field != base.$field {
                    let mut value = String::new();
                    config.$field.write(&mut value);
                    diff.push((stringify!($field), value));
                }
            )*
            diff
        }

        pub(super) fn set_config_field(config: &mut Config, field: &str, value: &Expr) -> Result<(), CodeError> {
            match field {
                $(stringify!($field) => config.$field = Code::read(value)?,)*
                other => return error(format!("Config has no field `{other}` the code form reads")),
            }
            Ok(())
        }
    };
}

config_fields!(
    cluster_id,
    rng_seed,
    max_packet_size,
    probe_interval,
    probe_timeout,
    indirect_probes,
    unreachable_grace,
    max_local_health,
    suspicion_min,
    suspicion_max_factor,
    suspicion_confirmations,
    gossip_interval,
    gossip_fanout,
    retransmit_mult,
    max_pending_updates,
    anti_entropy_interval,
    join_attempts,
    join_retry,
    rejoin_interval,
    max_join_targets,
    leave_timeout,
    offline_retention,
    join_rate,
    join_burst,
    max_nodes,
    max_tags_size,
    max_tags,
);

/// `.config_with(|c| { c.field = value; .. })` for the fields that differ from
/// the default; a comment if something unwritable (the key ring) differs too.
pub(super) fn write_config(config: &Config, out: &mut String) {
    let base = Config::for_cluster(CLUSTER);
    let diff = config_diff(config, &base);
    if !diff.is_empty() {
        out.push_str(".config_with(|c| {");
        for (field, value) in &diff {
            let _ = write!(out, " c.{field} = {value};");
        }
        out.push_str(" })");
    }
    let mut rebuilt = base;
    for (field, value) in &diff {
        // Written just above by this module: always readable.
        if let Ok(expr) = parse::parse(value) {
            let _ = set_config_field(&mut rebuilt, field, &expr);
        }
    }
    if rebuilt != *config {
        out.push_str(" /* the config also differs where code cannot show it: its key ring */");
    }
}

pub(super) fn read_config(expr: &Expr) -> Result<Config, CodeError> {
    match expr {
        Expr::Call(p, args) if ends(p, &["Config", "for_cluster"]) => match one(args)? {
            Expr::Str(name) => Ok(Config::for_cluster(name)),
            other => error(format!("expected a cluster name, got {other:?}")),
        },
        Expr::Call(p, args) if args.is_empty() && ends(p, &["Config", "default"]) => {
            Ok(Config::default())
        }
        Expr::Call(p, args) if args.is_empty() && ends(p, &["Config", "lan"]) => Ok(Config::lan()),
        Expr::Call(p, args) if args.is_empty() && ends(p, &["Config", "wan"]) => Ok(Config::wan()),
        _ => error(format!(
            "expected Config::for_cluster(..), default(), lan() or wan(), got {expr:?}"
        )),
    }
}
