//! `procwatch config show|check`: print the effective configuration, or validate files.
use std::{io::Write, process::ExitCode};

use anyhow::Context;

use crate::{
    cli::{ConfigAction, ConfigArgs},
    config::{self, ConfigSources, Loaded},
};

/// Runs `procwatch config ...`.
pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        ConfigAction::Show { config } => {
            let loaded = config::load_report(&ConfigSources::standard(), config.as_deref())?;
            let text = render(&loaded)?;
            std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .context("cannot write to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Check { files } => {
            let mut failed = false;
            for file in &files {
                match config::check_file(file) {
                    Ok(_) => println!("{}: ok", file.display()),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// The effective configuration as YAML, under a comment header naming the layers and their keys.
pub fn render(loaded: &Loaded) -> anyhow::Result<String> {
    let mut config = loaded.config.clone();
    // `show` output ends up in terminals, tickets and logs; the token is a credential.
    if config.api.token.is_some() {
        config.api.token = Some("<redacted>".into());
    }
    let mut out = String::from(
        "# procwatch effective configuration\n# layers, each overriding the keys it sets:\n",
    );
    for layer in &loaded.layers {
        let detail = if !layer.present {
            " (not present)".to_string()
        } else if layer.origin == config::DEFAULTS_ORIGIN {
            String::new()
        } else if layer.keys.is_empty() {
            " (sets no keys)".to_string()
        } else {
            format!(": {}", layer.keys.join(", "))
        };
        out.push_str(&format!("#   {}{detail}\n", layer.origin));
    }
    out.push_str(
        &config
            .to_yaml()
            .context("cannot render the configuration")?,
    );
    Ok(out)
}
