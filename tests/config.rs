//! Configuration: defaults → file → environment, and errors that name the key.
// figment::Jail closures return figment::Error, which is large; that is its API.
#![allow(clippy::result_large_err)]

use figment::Jail;
use novart::config::{Config, MailTransport, Synchronous};

fn load_err() -> String {
    Config::load(None).unwrap_err().to_string()
}

#[test]
fn defaults_need_no_file() {
    Jail::expect_with(|_jail| {
        let c = Config::load(None).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.port, 8000);
        assert_eq!(c.server.bind, "127.0.0.1");
        assert_eq!(c.public_url(), "http://127.0.0.1:8000");
        assert_eq!(c.storage.data_dir, std::path::PathBuf::from("./data"));
        assert_eq!(c.db_path(), std::path::PathBuf::from("./data/novart.db"));
        assert_eq!(c.storage.synchronous, Synchronous::Full);
        assert_eq!(c.mail.transport, MailTransport::Outbox);
        assert!(c.registration.require_email_verification);
        Ok(())
    });
}

#[test]
fn file_then_environment() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "novart.toml",
            r#"
            [server]
            port = 9000
            public_url = "https://studio.example.com/"
            [registration]
            open = false
            "#,
        )?;
        let c = Config::load(None).unwrap();
        assert_eq!(c.server.port, 9000);
        assert!(!c.registration.open);
        assert_eq!(c.public_url(), "https://studio.example.com");
        assert!(c.is_https());

        jail.set_env("NOVART_SERVER__PORT", "9100");
        jail.set_env("NOVART_STORAGE__DATA_DIR", "/srv/novart");
        jail.set_env("NOVART_REGISTRATION__REQUIRE_EMAIL_VERIFICATION", "false");
        let c = Config::load(None).unwrap();
        assert_eq!(c.server.port, 9100, "env beats the file");
        assert_eq!(c.storage.data_dir, std::path::PathBuf::from("/srv/novart"));
        assert!(!c.registration.require_email_verification);
        assert!(
            !c.registration.open,
            "the file still applies where env is silent"
        );
        Ok(())
    });
}

#[test]
fn explicit_file_via_flag_or_env() {
    Jail::expect_with(|jail| {
        jail.create_file("novart.toml", "[server]\nport = 1111\n")?;
        jail.create_file("other.toml", "[server]\nport = 2222\n")?;
        assert_eq!(
            Config::load(Some(std::path::Path::new("other.toml")))
                .unwrap()
                .server
                .port,
            2222
        );
        jail.set_env("NOVART_CONFIG", "other.toml");
        assert_eq!(Config::load(None).unwrap().server.port, 2222);
        let e = Config::load(Some(std::path::Path::new("missing.toml"))).unwrap_err();
        assert!(e.to_string().contains("missing.toml"), "{e}");
        Ok(())
    });
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    Jail::expect_with(|jail| {
        jail.create_file("novart.toml", "[server]\nprot = 9000\n")?;
        let e = load_err();
        assert!(e.contains("server.prot"), "{e}");
        assert!(e.contains("unknown key"), "{e}");

        jail.create_file("novart.toml", "[sever]\nport = 9000\n")?;
        let e = load_err();
        assert!(e.contains("sever"), "{e}");
        Ok(())
    });
}

#[test]
fn wrong_types_are_errors_naming_the_key() {
    Jail::expect_with(|jail| {
        jail.create_file("novart.toml", "[server]\nport = \"eighty\"\n")?;
        let e = load_err();
        assert!(e.contains("server.port"), "{e}");
        jail.create_file("novart.toml", "")?;
        jail.set_env("NOVART_SERVER__PORT", "99999");
        let e = load_err();
        assert!(e.contains("server.port"), "{e}");
        assert!(e.contains("NOVART_SERVER__PORT"), "{e}");
        Ok(())
    });
}

#[test]
fn misspelt_environment_variables_are_errors() {
    Jail::expect_with(|jail| {
        jail.set_env("NOVART_SERVER_PORT", "9000");
        let e = load_err();
        assert!(e.contains("NOVART_SERVER_PORT"), "{e}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("NOVART_SERVER__PROT", "9000");
        let e = load_err();
        assert!(e.contains("server.prot"), "{e}");
        Ok(())
    });
}

#[test]
fn impossible_values_are_errors_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        ("[server]\nbind = \"localhost:80\"", "server.bind"),
        (
            "[server]\npublic_url = \"studio.example.com\"",
            "server.public_url",
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]",
            "server.trusted_proxies",
        ),
        (
            "[storage]\nsynchronous = \"sometimes\"",
            "storage.synchronous",
        ),
        ("[storage]\ndata_dir = \"\"", "storage.data_dir"),
        ("[server]\nnode_id = \"node one\"", "server.node_id"),
        ("[auth]\nsession_idle_hours = 0", "auth.session_idle_hours"),
        (
            "[auth]\nsession_idle_hours = 100\nsession_absolute_hours = 10",
            "auth.session_absolute_hours",
        ),
        ("[auth]\nbcrypt_cost = 4", "auth.bcrypt_cost"),
        ("[auth]\nreset_link_minutes = 0", "auth.reset_link_minutes"),
        ("[mail]\ntransport = \"smtp\"", "mail.smtp_url"),
        (
            "[mail]\ntransport = \"smtp\"\nsmtp_url = \"ftp://x\"",
            "mail.smtp_url",
        ),
        ("[mail]\ntransport = \"pigeon\"", "mail.transport"),
        ("[mail]\nfrom = \"not a mailbox\"", "mail.from"),
        ("[legal]\noperator_name = \"  \"", "legal.operator_name"),
        ("[storage]\nresult_retention_hours = 0", "storage.result_retention_hours"),
        ("[storage]\nmax_upload_bytes = 10", "storage.max_upload_bytes"),
        ("[queue]\nmax_attempts = 0", "queue.max_attempts"),
        ("[[models]]\nid = \"m\"\nname = \"M\"\nproviders = [\"nope\"]", "models[0].providers"),
        ("[[models]]\nid = \"m\"\nname = \"M\"\nproviders = [\"builtin\"]\nsizes = [\"big\"]", "models[0].sizes"),
        ("[[models]]\nid = \"m\"\nname = \"M\"\nproviders = [\"builtin\"]\nmax_n = 11", "models[0].max_n"),
        ("[[models]]\nid = \"m\"\nname = \"M\"\nproviders = [\"builtin\"]\n[[models]]\nid = \"m\"\nname = \"N\"\nproviders = [\"builtin\"]", "models[1].id"),
        ("[[providers]]\nid = \"o\"\nkind = \"openai\"", "providers[0]"),
        ("[[providers]]\nid = \"o\"\nkind = \"midjourney\"\nbase_url = \"http://x\"", "providers"),
        ("[[providers]]\nid = \"c\"\nkind = \"comfyui\"\nbase_url = \"http://x\"", "providers[0]"),
        ("[[models]]\nid = \"m\"\nname = \"M\"\nproviders = [\"builtin\"]\ncolour = 1", "models"),
    ];
    for (toml, key) in cases {
        Jail::expect_with(|jail| {
            jail.create_file("novart.toml", toml)?;
            let e = load_err();
            assert!(e.starts_with("config error: "), "{e}");
            assert!(e.contains(key), "{toml:?} → {e}");
            assert_eq!(e.lines().count(), 1, "one line: {e}");
            Ok(())
        });
    }
}

#[test]
fn the_example_file_is_valid_and_complete() {
    let text = include_str!("../novart.example.toml");
    Jail::expect_with(|jail| {
        jail.create_file("novart.toml", text)?;
        let c = Config::load(None).unwrap();
        assert_eq!(c, Config::default(), "the example shows the defaults");
        Ok(())
    });
    // Every key of every section appears in the example.
    let defaults = toml_keys(&serde_json::to_value(Config::default()).unwrap(), "");
    for key in defaults {
        let leaf = key.rsplit('.').next().unwrap();
        let section = key.split('.').next().unwrap();
        assert!(
            text.contains(&format!("[{section}]")),
            "section {section} missing"
        );
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{leaf} = "))),
            "{key} missing"
        );
    }
}

fn toml_keys(v: &serde_json::Value, prefix: &str) -> Vec<String> {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_object() {
                    toml_keys(v, &p)
                } else if v.is_array() && prefix.is_empty() {
                    vec![] // [[providers]] / [[models]]: documented as commented examples
                } else {
                    vec![p]
                }
            })
            .collect(),
        _ => vec![],
    }
}

#[test]
fn the_default_catalogue_is_the_builtin_renderer() {
    let c = Config::default();
    let (providers, models) = c.catalogue();
    assert_eq!(providers.len(), 1);
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].providers, vec!["builtin".to_string()]);
    assert!(models[0].sizes.iter().any(|s| s == "1024x1024"));
}

#[test]
fn a_configured_catalogue_replaces_the_default_model() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "novart.toml",
            r#"
            [[providers]]
            id = "up"
            kind = "builtin"

            [[models]]
            id = "fast"
            name = "Fast"
            providers = ["up", "builtin"]
            price = 3
            sizes = ["512x512"]
            "#,
        )?;
        let c = Config::load(None).unwrap();
        let (providers, models) = c.catalogue();
        assert_eq!(
            providers.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            vec!["up", "builtin"]
        );
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].price, 3);
        assert_eq!(models[0].max_n, 4, "defaults fill the rest");
        Ok(())
    });
}

/// Each mistake names its key once, in one spelling (`models[0].x`), says
/// where it is (file and line, or the variable), and suggests the nearest
/// valid key.
#[test]
fn config_errors_name_the_key_once_and_say_where() {
    let model = "[[models]]\nid = \"m\"\nname = \"M\"\nproviders = [\"builtin\"]\n";
    let cases: Vec<(String, &str, &[&str])> = vec![
        (
            "[sever]\nport = 9000\n".into(),
            "sever",
            &["did you mean server?", "line 1"],
        ),
        (
            "[server]\nprot = 9000\n".into(),
            "server.prot",
            &["did you mean port?", "line 2"],
        ),
        (
            "# a comment\n\n[storage]\ndata_dir = \"./d\"\nmax_uplaod_bytes = 5\n".into(),
            "storage.max_uplaod_bytes",
            &["did you mean max_upload_bytes?", "line 5"],
        ),
        (
            "[moderation]\nblocked_termz = [\"x\"]\n".into(),
            "moderation.blocked_termz",
            &["did you mean blocked_terms?", "line 2"],
        ),
        (
            format!("{model}upstrem_model = \"sdxl\"\n"),
            "models[0].upstrem_model",
            &["did you mean upstream_model?", "line 5"],
        ),
        (
            format!(
                "{model}{}upstrem_model = \"sdxl\"\n",
                model.replace("\"m\"", "\"n\"")
            ),
            "models[1].upstrem_model",
            &["did you mean upstream_model?", "line 9"],
        ),
        (
            format!("{model}price = \"cheap\"\n"),
            "models[0].price",
            &["line 5"],
        ),
        (
            "[server]\nport = \"eighty\"\n".into(),
            "server.port",
            &["line 2"],
        ),
        (
            "[limits]\nzzzz = 1\n".into(),
            "limits.zzzz",
            &["unknown key", "line 2"],
        ),
    ];
    for (file, key, says) in cases {
        Jail::expect_with(|jail| {
            jail.create_file("novart.toml", &file)?;
            let e = Config::load(None).unwrap_err();
            assert_eq!(e.key, key, "{file}: {e}");
            let text = e.to_string();
            assert_eq!(text.matches(key).count(), 1, "the key once: {text}");
            assert!(text.contains("novart.toml"), "{text}");
            for s in says {
                assert!(text.contains(s), "{file}: {text} lacks {s:?}");
            }
            // No doubled or dotted-index spellings.
            let last = key.rsplit(['.', ']']).next().unwrap();
            assert!(!text.contains(&format!("{last}.{last}")), "{text}");
            assert!(!text.contains("models.0"), "{text}");
            Ok(())
        });
    }
    Jail::expect_with(|jail| {
        jail.set_env("NOVART_SERVER__PROT", "9000");
        let e = Config::load(None).unwrap_err();
        assert_eq!(e.key, "server.prot");
        let text = e.to_string();
        assert!(text.contains("did you mean port?"), "{text}");
        assert!(text.contains("NOVART_SERVER__PROT"), "{text}");
        assert_eq!(text.matches("server.prot").count(), 1, "{text}");
        Ok(())
    });
}

#[test]
fn model_sizes_off_the_8_pixel_grid_are_refused_with_the_nearest() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "novart.toml",
            "[[models]]\nid = \"m\"\nname = \"M\"\nproviders = [\"builtin\"]\nsizes = [\"1024x1024\", \"1152x897\"]\n",
        )?;
        let e = Config::load(None).unwrap_err();
        assert_eq!(e.key, "models[0].sizes");
        assert!(
            e.message.contains("multiple of 8") && e.message.contains("1152x896"),
            "{e}"
        );
        jail.create_file(
            "novart.toml",
            "[[models]]\nid = \"m\"\nname = \"M\"\nproviders = [\"builtin\"]\nsizes = [\"1024x1024\", \"1152x896\"]\n",
        )?;
        Config::load(None).unwrap();
        Ok(())
    });
}
