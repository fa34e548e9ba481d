//! Walks every entry of the embedded catalog and, for each front door the
//! entry lists, parses a full set of its options the way that front door
//! receives them, runs the command through the dispatcher as that front
//! door's caller, and renders the outcome with that front door's renderer.
//! Nothing here names a command: a new catalog entry is covered as it is.

use crate::catalog::{ArgValue, Args, Catalog, CommandSpec, OptionKind, Surface};
use crate::config::Config;
use crate::core::command::{Command, Reply};
use crate::core::error::CoreError;
use crate::core::model::{Caller, Platform, Role};
use crate::dispatch::{parse, Dispatcher};
use crate::gateway::{a2a, discord, http, mcp, twitch, ws};
use crate::limits::RateLimits;
use serde_json::Value;
use std::sync::Arc;

/// A valid value for every option of `spec`, from its declaration alone.
fn sample_args(spec: &CommandSpec) -> Args {
    spec.options
        .iter()
        .map(|o| {
            let v = match o.kind {
                OptionKind::String => match o.choices.first() {
                    Some(c) => ArgValue::Str(c.clone()),
                    None => ArgValue::Str("yes|no".into()),
                },
                OptionKind::Agent => ArgValue::Str("agent-1".into()),
                OptionKind::Integer | OptionKind::Task => {
                    let lo = o.min.unwrap_or(1).max(1);
                    ArgValue::Int(o.max.map_or(lo, |hi| lo.min(hi)))
                }
                OptionKind::Boolean => ArgValue::Bool(true),
            };
            (o.name.clone(), v)
        })
        .collect()
}

/// The words a viewer types after the alias, in option order.
fn chat_words(spec: &CommandSpec, args: &Args) -> String {
    spec.options
        .iter()
        .filter_map(|o| args.get(&o.name))
        .map(|v| match v {
            ArgValue::Str(s) => s.clone(),
            ArgValue::Int(i) => i.to_string(),
            ArgValue::Bool(b) => b.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What front door `surface` parses from the sample arguments.
fn parse_on(
    catalog: &Catalog,
    surface: Surface,
    spec: &CommandSpec,
    args: &Args,
) -> Result<Command, CoreError> {
    match surface {
        Surface::Ws => {
            let mut frame = parse::args_json(args);
            frame.insert("type".into(), Value::String(spec.ws_type().into()));
            frame.insert("id".into(), Value::String("walk".into()));
            match ws::frames::parse(&Value::Object(frame).to_string(), catalog) {
                Ok((_, ws::frames::ClientFrame::Command(c))) => Ok(c),
                Ok((_, other)) => Err(CoreError::Internal(format!("parsed as {other:?}"))),
                Err(bad) => Err(CoreError::BadRequest(bad.message)),
            }
        }
        Surface::Http | Surface::A2a => {
            parse::command_in(catalog, spec.ws_type(), parse::args_json(args))
        }
        Surface::Mcp => {
            let (checked, _) = mcp::tools::checked_args(spec, Some(&parse::args_json(args)))?;
            parse::chat_command(spec.ws_type(), &checked)
        }
        Surface::Discord => {
            spec.validate(args)?;
            parse::chat_command(spec.ws_type(), args)
        }
        Surface::Twitch => {
            let parsed = spec.parse_positional(&chat_words(spec, args))?;
            parse::chat_command(spec.ws_type(), &parsed)
        }
    }
}

/// Renders an outcome the way front door `surface` shows it; the text shown.
fn render_on(surface: Surface, outcome: &Result<Reply, CoreError>) -> String {
    match (surface, outcome) {
        (Surface::Ws, Ok(r)) => ws::frames::reply_frame(Some("walk"), r),
        (Surface::Ws, Err(e)) => ws::frames::error_frame(Some("walk"), e),
        (Surface::Http, Ok(r)) => http::caller::reply_json(r).to_string(),
        (Surface::Http, Err(e)) => format!("{} {e}", http::caller::status_for(e)),
        (Surface::Discord, Ok(r)) => {
            serde_json::to_string(&discord::render::reply_message(r)).unwrap_or_default()
        }
        (Surface::Discord, Err(e)) => {
            serde_json::to_string(&discord::render::error_message(e)).unwrap_or_default()
        }
        (Surface::Twitch, Ok(r)) => twitch::render::reply(r),
        (Surface::Mcp, Ok(r)) => {
            serde_json::to_string(&mcp::handler::render_reply(r)).unwrap_or_default()
        }
        (Surface::Mcp, Err(e)) => {
            serde_json::to_string(&mcp::handler::render_error(e)).unwrap_or_default()
        }
        (Surface::Twitch, Err(e)) => twitch::render::error(e),
        (Surface::A2a, Ok(Reply::Task(Some(t)))) => a2a::wire::task(t).to_string(),
        (Surface::A2a, Ok(other)) => format!("{other:?}"),
        (Surface::A2a, Err(e)) => a2a::wire::A2aError::from_core(e.clone(), false)
            .to_json()
            .to_string(),
    }
}

fn platform_of(surface: Surface) -> Platform {
    match surface {
        Surface::Ws => Platform::Ws,
        Surface::Http => Platform::Http,
        Surface::Mcp => Platform::Mcp,
        Surface::A2a => Platform::A2a,
        Surface::Discord => Platform::Discord,
        Surface::Twitch => Platform::Twitch,
    }
}

#[tokio::test]
async fn every_catalog_entry_parses_runs_and_renders_on_each_front_door_it_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::load(None).expect("default config");
    cfg.database.url = dir.path().join("walk.db").display().to_string();
    cfg.limits.exempt_roles = vec![Role::Admin];
    let core = crate::server::open_core(&cfg, Arc::new(crate::bus::Bus::new()))
        .await
        .expect("core");
    let dispatch = Dispatcher::new(core, Arc::new(RateLimits::new(&cfg.limits)));
    let (_, doc) = http::api_router();
    let doc = serde_json::to_value(&doc).expect("openapi as json");
    let operations: Vec<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|p| p.as_object().into_iter().flat_map(|m| m.values()))
        .filter_map(|op| op["operationId"].as_str().map(str::to_string))
        .collect();
    let catalog = Catalog::embedded().expect("embedded catalog");
    let mut checked = 0;
    for spec in catalog.commands() {
        let args = sample_args(spec);
        for &surface in &spec.platforms {
            let name = spec.ws_type();
            let cmd = parse_on(&catalog, surface, spec, &args)
                .unwrap_or_else(|e| panic!("{name} on {surface:?} does not parse: {e}"));
            assert_eq!(cmd.name(), name, "{surface:?}");
            if surface == Surface::Http {
                assert!(
                    operations.iter().any(|o| o == name),
                    "{name} lists http but no /api route serves it (operationId)"
                );
            }
            let caller = Caller {
                identity: "walker".into(),
                role: Role::Admin,
                capabilities: vec![],
                platform: platform_of(surface),
            };
            let outcome = dispatch.dispatch(&caller, cmd).await;
            if let Err(CoreError::BadRequest(m) | CoreError::Internal(m)) = &outcome {
                assert!(
                    !m.contains("not available over") && !m.contains("catalog"),
                    "{name} refused on {surface:?}: {m}"
                );
            }
            let shown = render_on(surface, &outcome);
            assert!(
                !shown.trim().is_empty() && shown != "{}",
                "{name} renders nothing on {surface:?} ({outcome:?})"
            );
            checked += 1;
        }
    }
    assert!(checked >= catalog.commands().len(), "{checked} checks");
}
