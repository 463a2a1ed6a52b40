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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("procwatch: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::Monitor(args) => commands::monitor::run(args).await,
            cli::Command::Scan(args) => commands::scan::run(args).await,
            cli::Command::Events(args) => commands::events::run(args).await,
            cli::Command::Config(args) => commands::config::run(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("procwatch: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
