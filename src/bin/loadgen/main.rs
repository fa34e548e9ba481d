//! `loadgen`: measures swarmbridge against its performance budget.
//!
//! A standalone client: it starts the real `swarmbridge serve` (release
//! build, next to this binary, or `--bin`) as a child process on a fresh
//! SQLite file, registers agents with `swarmbridge agent add`, and speaks
//! the agent protocol in JSON over loopback WebSockets. It does not link
//! the swarmbridge library, so it measures any build of the server the
//! same way. For comparison it starts a bare tokio-tungstenite broadcast
//! server (`loadgen bare-server`) and the Node `ws` server
//! (`benches/node-ws-broadcast.js`). Every run is bounded and stops by
//! itself. Each scenario prints markdown table rows on stdout (progress on
//! stderr); `benches/run-all.sh` runs them all. See docs/performance.md.

mod alloc;
mod bare;
mod claims;
mod common;
mod crash;
mod fanout;
mod idle;
mod latency;
mod postgres;
mod reconnect;
mod startup;

use clap::{Parser, Subcommand};
use fanout::{FanoutPlan, FanoutTarget};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "swarmbridge load generator (loopback only, bounded runs)")]
struct Args {
    /// The swarmbridge binary (default: next to this one).
    #[arg(long, global = true)]
    bin: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open-loop broadcast fan-out: the highest clean offered rate per target.
    Fanout {
        /// Receiver counts, each measured against every target.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
        conns: Vec<usize>,
        /// Targets, in the order they are measured.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "swarmbridge,bare,node"
        )]
        targets: Vec<FanoutTarget>,
        /// Seconds of publishing per rate step.
        #[arg(long, default_value_t = 5.0)]
        step_s: f64,
        /// First offered rate, in deliveries per second.
        #[arg(long, default_value_t = 25000.0)]
        start: f64,
        /// Highest offered rate tried, in deliveries per second.
        #[arg(long, default_value_t = 10_000_000.0)]
        max: f64,
        /// Bisection steps between the last clean and the first unclean rate.
        #[arg(long, default_value_t = 2)]
        refine: u32,
        /// Bytes of text per broadcast.
        #[arg(long, default_value_t = 200)]
        payload: usize,
        /// Receivers acknowledge every N-th event.
        #[arg(long, default_value_t = 100)]
        ack_every: u64,
        /// A step is clean only with p99 delivery at most this (ms).
        #[arg(long, default_value_t = 100.0)]
        p99_ms: f64,
        /// The Node reference server.
        #[arg(long, default_value = "benches/node-ws-broadcast.js")]
        node_script: PathBuf,
        /// `node_modules` directory holding `ws` (passed as NODE_PATH).
        #[arg(long, env = "LOADGEN_NODE_PATH")]
        node_path: Option<PathBuf>,
    },
    /// Memory of the server per idle connected agent.
    Idle {
        /// Agents that connect and stay silent.
        #[arg(long, default_value_t = 10000)]
        conns: usize,
    },
    /// claim+complete per second by concurrent agents, checked in the database.
    Claims {
        /// Agents claiming and completing concurrently.
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Tasks created beforehand (each is claimed and completed once).
        #[arg(long, default_value_t = 20000)]
        tasks: usize,
    },
    /// `status`, `task.get`, `msg.send` latency at a fixed request rate.
    Latency {
        /// Agents sharing the rate.
        #[arg(long, default_value_t = 10)]
        conns: usize,
        /// Requests per second, all agents together.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Seconds per request kind.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Tasks created for `task.get`.
        #[arg(long, default_value_t = 1000)]
        tasks: usize,
    },
    /// Spawn to first 200 from /health on a fresh directory.
    Startup {
        /// Server starts measured.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Agents away while events pile up, then reconnecting together.
    Reconnect {
        /// Agents that go away and reconnect together.
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Tasks created (task.created events per agent) while they are away.
        #[arg(long, default_value_t = 20000)]
        events: usize,
        /// Give up on agents not caught up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
        /// Each agent sends a ping or status every this many ms during replay.
        #[arg(long, default_value_t = 250)]
        probe_ms: u64,
    },
    /// SIGKILL mid-load, restart on the same database, count what was lost
    /// (acked messages, tasks, completions) and doubled (docs/reliability.md).
    Crash {
        /// Kill-and-restart runs, each on a fresh database.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// A PostgreSQL server URL: each run makes (and drops) a fresh
        /// database there. Without it, each run uses a fresh SQLite file.
        #[arg(long)]
        database_url: Option<String>,
        /// Agents claiming and completing tasks.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Agents sending messages.
        #[arg(long, default_value_t = 2)]
        senders: usize,
        /// Tasks per run (at most 500).
        #[arg(long, default_value_t = 300)]
        tasks: usize,
        /// Lease of each claim, in seconds (tasks claimed at the kill are
        /// re-opened this long after it).
        #[arg(long, default_value_t = 2)]
        lease_s: u64,
    },
    /// Claims and cross-instance event latency on PostgreSQL, with one or
    /// more instances sharing a fresh database at `--url`'s server.
    Pg {
        /// PostgreSQL server URL; each step creates (and drops) its own database there.
        #[arg(long, env = "SWARMBRIDGE_TEST_PG")]
        url: String,
        /// Instance counts, one step each.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        instances: Vec<usize>,
        /// Agents claiming and completing concurrently, spread over the instances.
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Tasks per step (each is claimed and completed once).
        #[arg(long, default_value_t = 20000)]
        tasks: usize,
        /// Messages sent one after the other for the cross-instance latency (0: none).
        #[arg(long, default_value_t = 1000)]
        messages: usize,
    },
    /// Learned allocation against first come: a simulated swarm of fast,
    /// slow and flaky agents (and a uniform one) runs the same task stream
    /// under both modes.
    Alloc {
        /// Tasks in the stream.
        #[arg(long, default_value_t = 300)]
        tasks: usize,
        /// Tasks created per second.
        #[arg(long, default_value_t = 15.0)]
        rate: f64,
    },
    /// Registers (and caches) the agents every scenario needs with its
    /// default arguments, so later runs start at once.
    Prepare,
    /// (internal) the bare tokio-tungstenite broadcast server.
    BareServer {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let bin = || common::swarmbridge_bin(args.bin.as_deref());
        match &args.cmd {
            Cmd::BareServer { listen } => bare::bare_server(*listen).await,
            Cmd::Fanout {
                conns,
                targets,
                step_s,
                start,
                max,
                refine,
                payload,
                ack_every,
                p99_ms,
                node_script,
                node_path,
            } => {
                anyhow::ensure!(*ack_every > 0, "--ack-every must be at least 1");
                anyhow::ensure!(
                    *step_s > 0.0 && *start > 0.0,
                    "--step-s and --start must be positive"
                );
                let plan = FanoutPlan {
                    bin: bin()?,
                    conns: conns.clone(),
                    targets: targets.clone(),
                    step_s: *step_s,
                    start_deliveries: *start,
                    max_deliveries: *max,
                    refine: *refine,
                    payload: *payload,
                    ack_every: *ack_every,
                    p99_limit_ms: *p99_ms,
                    node_script: node_script.clone(),
                    node_path: node_path.clone(),
                };
                fanout::fanout(&plan).await
            }
            Cmd::Prepare => {
                let bin = bin()?;
                common::registry(&bin, &fanout::roster(fanout::REGISTERED_SUBSCRIBERS)).await?;
                common::registry(&bin, &claims::roster(100)).await?;
                common::registry(&bin, &latency::roster(10)).await?;
                common::registry(&bin, &reconnect::roster(1)).await?;
                common::registry(&bin, &reconnect::roster(100)).await?;
                common::registry(&bin, &alloc::roster()).await?;
                Ok(())
            }
            Cmd::Crash {
                runs,
                database_url,
                workers,
                senders,
                tasks,
                lease_s,
            } => {
                crash::crash(&crash::CrashPlan {
                    bin: bin()?,
                    database_url: database_url.clone(),
                    runs: *runs,
                    workers: *workers,
                    senders: *senders,
                    tasks: *tasks,
                    lease_s: *lease_s,
                })
                .await
            }
            Cmd::Pg {
                url,
                instances,
                agents,
                tasks,
                messages,
            } => {
                anyhow::ensure!(
                    *agents > 0 && *tasks > 0,
                    "--agents and --tasks must be positive"
                );
                let plan = postgres::PgPlan {
                    url: url.clone(),
                    instances: instances.clone(),
                    agents: *agents,
                    tasks: *tasks,
                    messages: *messages,
                };
                postgres::pg(&bin()?, &plan).await
            }
            Cmd::Idle { conns } => idle::idle(&bin()?, *conns).await,
            Cmd::Alloc { tasks, rate } => {
                anyhow::ensure!(
                    *tasks > 0 && *rate > 0.0,
                    "--tasks and --rate must be positive"
                );
                alloc::alloc(&bin()?, *tasks, *rate).await
            }
            Cmd::Claims { agents, tasks } => claims::claims(&bin()?, *agents, *tasks).await,
            Cmd::Latency {
                conns,
                rate,
                seconds,
                tasks,
            } => {
                anyhow::ensure!(
                    *rate > 0.0 && *seconds > 0.0 && *tasks > 0,
                    "--rate, --seconds and --tasks must be positive"
                );
                latency::latency(&bin()?, *conns, *rate, *seconds, *tasks).await
            }
            Cmd::Startup { runs } => {
                anyhow::ensure!(*runs > 0, "--runs must be at least 1");
                startup::startup(&bin()?, *runs).await
            }
            Cmd::Reconnect {
                agents,
                events,
                timeout_s,
                probe_ms,
            } => {
                anyhow::ensure!(*probe_ms > 0, "--probe-ms must be at least 1");
                reconnect::reconnect(
                    &bin()?,
                    *agents,
                    *events,
                    Duration::from_secs(*timeout_s),
                    Duration::from_millis(*probe_ms),
                )
                .await
            }
        }
    })
}
