//! procwatch: Linux runtime-security monitor.
use clap::Parser;
use procwatch::{cli, commands};

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // Detach before any thread exists; the guard removes the pid file at exit.
    let _pid_file = match &cli.command {
        cli::Command::Monitor(args) if args.daemon => {
            match procwatch::daemon::daemonize(&args.pid_file, &args.daemon_log) {
                Ok(guard) => Some(guard),
                Err(e) => {
                    eprintln!("procwatch: {e:#}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // One thread runs the sensor reader and the engine: hand-offs between them stay on that
    // thread instead of waking another one per batch (a futex round trip, and on a VM a trap
    // to the hypervisor). Blocking work (sweeps, dumps) has its own pool; sinks their thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("procwatch: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The command runs as a task of the runtime, not as the future block_on polls: waking
    // that future always goes through the driver's eventfd (a write and one more epoll
    // round per wake), while waking a task on the same thread is a push onto its queue. In an
    // exec storm the sensor wakes the consumer of its events hundreds of times a second.
    let result = runtime.block_on(runtime.spawn(async {
        match cli.command {
            cli::Command::Monitor(args) => commands::monitor::run(args).await,
            cli::Command::Scan(args) => commands::scan::run(args).await,
            cli::Command::Events(args) => commands::events::run(args).await,
            cli::Command::Config(args) => commands::config::run(args),
            cli::Command::Baseline(args) => commands::baseline::run(args),
            cli::Command::Train(args) => commands::monitor::run(args.into_monitor()).await,
            cli::Command::Api(args) => commands::api::run(args).await,
        }
    }));
    match result.unwrap_or_else(|e| Err(anyhow::anyhow!("the command's task failed: {e}"))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("procwatch: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
