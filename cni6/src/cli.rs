//! The `cni6` command tree. Each subcommand's arguments and logic live in
//! its own module under [`crate::commands`]; this file only wires them up,
//! so adding a subcommand is one enum variant and one match arm.

use crate::commands;
use crate::error::Result;
use crate::options::Output;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "cni6",
    version,
    about = "Operate cni6, IPv6-only CNI networking for Kubernetes pods",
    long_about = "Operate cni6, IPv6-only CNI networking for Kubernetes pods.\n\n\
        Put cni6 on a node with `install` (or print its configuration with `conflist`), \
        see what it holds with `status`, free what leaked with `gc`, and feed the fabric \
        one route per node with `routes`.\n\n\
        The attach/check/detach/gc/plugin-status/version commands run the plugins \
        of a network configuration list (.conflist) exactly as a container runtime \
        (containerd, CRI-O, podman, multus: all through libcni) would: same \
        environment, same injected keys, same result cache. Use them to try a \
        configuration on a node, or to clean up by hand what a runtime left behind.",
    after_help = "Example:\n  ip netns add pod1\n  \
        cni6 attach --conflist /etc/cni/net.d/10-cni6.conflist --netns pod1 --id pod1\n  \
        cni6 detach --conflist /etc/cni/net.d/10-cni6.conflist --id pod1"
)]
pub struct Cli {
    /// Print machine-readable JSON on stdout where a command has structured output.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy the plugins into the runtime's bin directory and write this node's conflist (atomic, idempotent).
    Install(commands::install::InstallArgs),
    /// Remove what install wrote: cni6's plugins and the conflist it generated.
    Uninstall(commands::install::UninstallArgs),
    /// Check the node's network configurations: plugins' own parsers, typos, node facts, prerequisites.
    Lint(commands::lint::LintArgs),
    /// Print a network configuration list for this node, validated by the plugins' own parsers.
    Conflist(commands::conflist::ConflistArgs),
    /// Health check: the node's allocations, prefixes, bridge and firewall; exit 1 when something is wrong.
    Status(commands::status::StatusArgs),
    /// Print the fabric's routes to every node's pod prefixes (ip, wireguard or BIRD form).
    Routes(commands::routes::RoutesArgs),
    /// Print an IPv4-enabled node's NAT64 (tayga) and DNS64 (unbound) configuration.
    Nat64(commands::nat64::Nat64Args),
    /// Attach a network namespace to the network (CNI ADD through every plugin).
    Attach(commands::attach::AttachArgs),
    /// Verify an attachment is still as it was made (CNI CHECK).
    Check(commands::attach::CheckArgs),
    /// Detach a network namespace from the network (CNI DEL, plugins in reverse).
    Detach(commands::attach::DetachArgs),
    /// List (default) or free attachments that no longer exist (cached DELs, then CNI GC).
    Gc(commands::gc::GcArgs),
    /// Ask every plugin whether it can serve new attachments (CNI STATUS).
    PluginStatus(commands::plugin_status::PluginStatusArgs),
    /// Show which CNI versions the plugins of a network support (CNI VERSION).
    Version(commands::version::VersionArgs),
    /// Build a two-node cluster in namespaces, show addresses and reachability, remove it.
    Demo(crate::demo::DemoArgs),
}

/// Run a parsed command line, printing to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let mut o = Output {
        json: cli.json,
        out,
    };
    match cli.command {
        Command::Install(a) => commands::install::run(&a, &mut o),
        Command::Uninstall(a) => commands::install::uninstall(&a, &mut o),
        Command::Lint(a) => commands::lint::run(&a, &mut o),
        Command::Conflist(a) => commands::conflist::run(&a, &mut o),
        Command::Status(a) => commands::status::run(&a, &mut o),
        Command::Routes(a) => commands::routes::run(&a, &mut o),
        Command::Nat64(a) => commands::nat64::run(&a, &mut o),
        Command::Attach(a) => commands::attach::attach(&a, &mut o),
        Command::Check(a) => commands::attach::check(&a, &mut o),
        Command::Detach(a) => commands::attach::detach(&a, &mut o),
        Command::Gc(a) => commands::gc::run(&a, &mut o),
        Command::PluginStatus(a) => commands::plugin_status::run(&a, &mut o),
        Command::Version(a) => commands::version::run(&a, &mut o),
        Command::Demo(a) => crate::demo::run(&a, &mut o),
    }
}

/// The process entry point: parse, run, report, exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let res = run(cli, &mut lock);
    let _ = lock.flush();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.report());
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::PathBuf;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_attach() {
        let cli = Cli::try_parse_from([
            "cni6",
            "attach",
            "--conflist",
            "/x.conflist",
            "--netns",
            "pod1",
            "--id",
            "c1",
            "--args",
            "IgnoreUnknown=1",
            "--cni-path",
            "/a:/b",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Attach(a) = cli.command else {
            panic!("not attach")
        };
        assert_eq!(a.common.ifname, "eth0");
        assert_eq!(
            a.common.net.plugin_dirs(),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(a.common.net.cache_dir, PathBuf::from("/var/lib/cni"));
    }

    #[test]
    fn attach_requires_netns_and_id() {
        assert!(Cli::try_parse_from(["cni6", "attach", "--conflist", "/x", "--id", "c1"]).is_err());
        assert!(
            Cli::try_parse_from(["cni6", "attach", "--conflist", "/x", "--netns", "n"]).is_err()
        );
        assert!(Cli::try_parse_from(["cni6", "detach", "--conflist", "/x", "--id", "c1"]).is_ok());
    }

    #[test]
    fn gc_valid_and_all_stale_exclude_each_other() {
        assert!(Cli::try_parse_from([
            "cni6",
            "gc",
            "--conflist",
            "/x",
            "--valid",
            "a/eth0",
            "--all-stale"
        ])
        .is_err());
        let cli = Cli::try_parse_from([
            "cni6",
            "gc",
            "--conflist",
            "/x",
            "--valid",
            "a/eth0",
            "--valid",
            "b/net1",
        ])
        .unwrap();
        let Command::Gc(g) = cli.command else {
            panic!("not gc")
        };
        assert_eq!(g.valid.len(), 2);
    }
}
