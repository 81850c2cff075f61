//! The two servers as processes of this machine: found by the port they listen on, their CPU
//! time read from `/proc` like essync's, and Cassandra's memtables flushed to disk through its
//! own management interface.
//!
//! A server on another machine (or one this user may not inspect) is simply not found: the
//! figures that need it are left out, the run goes on.

use std::net::{IpAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::limit::timed_value;
use crate::process::cpu_seconds;

/// The Java program that flushes tables (see [`Servers::flush_cassandra`]).
const FLUSH_JAVA: &str = include_str!("Flush.java");

/// The server processes behind the benchmark's URLs, those found on this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Servers {
    /// The process listening on Elasticsearch's port.
    pub elasticsearch: Option<u32>,
    /// The process listening on Cassandra's port.
    pub cassandra: Option<u32>,
}

/// The servers' CPU seconds (user + system), at a moment or over a span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerCpu {
    /// Elasticsearch's.
    pub elasticsearch: Option<f64>,
    /// Cassandra's.
    pub cassandra: Option<f64>,
}

impl ServerCpu {
    /// What was spent between `earlier` and this moment.
    pub fn since(&self, earlier: &ServerCpu) -> ServerCpu {
        let minus = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        ServerCpu {
            elasticsearch: minus(self.elasticsearch, earlier.elasticsearch),
            cassandra: minus(self.cassandra, earlier.cassandra),
        }
    }

    /// Two spans together.
    pub fn plus(&self, other: &ServerCpu) -> ServerCpu {
        let sum = |a: Option<f64>, b: Option<f64>| Some(a? + b?);
        ServerCpu {
            elasticsearch: sum(self.elasticsearch, other.elasticsearch),
            cassandra: sum(self.cassandra, other.cassandra),
        }
    }
}

/// Wall time and the servers' CPU time of one span of work.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Span {
    /// Seconds from start to end.
    pub wall_s: f64,
    /// The servers' CPU seconds over the same span.
    pub cpu: ServerCpu,
}

impl Span {
    /// Two spans one after the other.
    pub fn plus(&self, other: &Span) -> Span {
        Span {
            wall_s: self.wall_s + other.wall_s,
            cpu: self.cpu.plus(&other.cpu),
        }
    }
}

impl Servers {
    /// The processes listening on the ports of `es_url` and of `cassandra` (HOST:PORT), when
    /// those name this machine.
    pub fn find(es_url: &str, cassandra: &str) -> Servers {
        let es_port = elasticsearch::http::Url::parse(es_url)
            .ok()
            .filter(|url| url.host_str().is_some_and(is_local_host))
            .and_then(|url| url.port_or_known_default());
        let cassandra_port = cassandra
            .rsplit_once(':')
            .filter(|(host, _)| is_local_host(host))
            .and_then(|(_, port)| port.parse().ok());
        let servers = Servers {
            elasticsearch: es_port.and_then(listening_pid),
            cassandra: cassandra_port.and_then(listening_pid),
        };
        let shown = |pid: Option<u32>| {
            pid.map_or("not found on this machine".into(), |p| format!("pid {p}"))
        };
        tracing::info!(
            "servers: Elasticsearch {}, Cassandra {}",
            shown(servers.elasticsearch),
            shown(servers.cassandra)
        );
        servers
    }

    /// The servers' CPU seconds now.
    pub fn cpu(&self) -> ServerCpu {
        ServerCpu {
            elasticsearch: self.elasticsearch.and_then(cpu_seconds),
            cassandra: self.cassandra.and_then(cpu_seconds),
        }
    }

    /// Runs `work` and measures its wall time and the servers' CPU time meanwhile.
    pub async fn span<T>(
        &self,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<(Span, T)> {
        let cpu = self.cpu();
        let (wall_s, value) = timed_value(work).await?;
        let span = Span {
            wall_s,
            cpu: self.cpu().since(&cpu),
        };
        Ok((span, value))
    }

    /// Flushes `tables` of `keyspace` from Cassandra's memtables to SSTables, waiting until they
    /// are written: `nodetool flush`, but through the server's JMX reached by attaching to its
    /// process (as `jconsole` does), since the test server opens no JMX port. Runs the small
    /// Java program `Flush.java` with the server's own `java`, which must be a JDK (the
    /// program is compiled at launch) and run as the server's user.
    pub async fn flush_cassandra(&self, keyspace: &str, tables: &[String]) -> anyhow::Result<()> {
        let pid = self
            .cassandra
            .context("Cassandra's process is not on this machine")?;
        let java = std::fs::read_link(format!("/proc/{pid}/exe"))
            .with_context(|| format!("cannot see which java runs Cassandra (pid {pid})"))?;
        let source = flush_program()?;
        let output = tokio::process::Command::new(&java)
            .arg(&source)
            .arg(pid.to_string())
            .arg(keyspace)
            .args(tables)
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("cannot run {}", java.display()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let reason = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            bail!("flushing {keyspace}.{} failed: {reason}", tables.join(","));
        }
        Ok(())
    }
}

/// Writes the flush program where `java` can read it (once per run).
fn flush_program() -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("essync-bench-{}-Flush.java", std::process::id()));
    if !path.is_file() {
        std::fs::write(&path, FLUSH_JAVA)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// Removes what [`flush_program`] wrote.
pub fn remove_flush_program() {
    let path = std::env::temp_dir().join(format!("essync-bench-{}-Flush.java", std::process::id()));
    let _ = std::fs::remove_file(path);
}

/// Whether `host` is this machine.
fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified(),
        Err(_) => (host, 0)
            .to_socket_addrs()
            .map(|mut addrs| addrs.any(|a| a.ip().is_loopback()))
            .unwrap_or(false),
    }
}

/// The process holding a TCP socket that listens on `port` (IPv4 or IPv6).
fn listening_pid(port: u16) -> Option<u32> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| holds_socket(Path::new(&format!("/proc/{pid}/fd")), &wanted))
}

/// The inodes of the listening sockets on `port` in a `/proc/net/tcp`-style table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit_once(':')?.1;
            let listens =
                u16::from_str_radix(local_port, 16).ok()? == port && *fields.get(3)? == LISTEN;
            listens.then(|| fields.get(9)?.parse().ok())?
        })
        .filter(|inode| *inode != 0)
        .collect()
}

/// Whether one of the descriptors in `fds` (a `/proc/PID/fd`) is one of `sockets`.
fn holds_socket(fds: &Path, sockets: &[String]) -> bool {
    let Ok(entries) = std::fs::read_dir(fds) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: 0100007F:2352 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4711 1 0 100 0 0 10 0\n\
             1: 0100007F:2352 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 4712 1 0 100 0 0 10 0\n\
             2: 0100007F:23F0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4713 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 9042), [4711]);
        assert_eq!(listening_inodes(table, 9200), [4713]);
        assert!(listening_inodes(table, 9300).is_empty());
    }

    #[test]
    fn a_port_this_process_listens_on_leads_to_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
        let port = listener.local_addr().expect("its address").port();
        assert_eq!(listening_pid(port), Some(std::process::id()));
    }

    #[test]
    fn only_this_machine_counts_as_local() {
        assert!(is_local_host("127.0.0.1"));
        assert!(is_local_host("localhost"));
        assert!(is_local_host("[::1]"));
        assert!(!is_local_host("192.0.2.7"));
    }

    #[test]
    fn cpu_spans_subtract_and_add_what_both_know() {
        let at = |es, c| ServerCpu {
            elasticsearch: es,
            cassandra: c,
        };
        let span = at(Some(5.0), Some(3.0)).since(&at(Some(2.0), None));
        assert_eq!(span, at(Some(3.0), None));
        assert_eq!(span.plus(&at(Some(1.0), Some(1.0))), at(Some(4.0), None));
    }
}
