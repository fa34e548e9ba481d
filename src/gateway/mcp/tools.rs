//! MCP tools derived from the command catalog: every entry that lists the
//! `mcp` platform is one tool, named after the command (`task claim` →
//! `task_claim`), described by the catalog's description, with a JSON
//! Schema built from the catalog's options. Nothing is declared twice: the
//! schema an MCP client sees and the checks a call passes are the same
//! catalog entry ([`CommandSpec::validate`]).

use crate::catalog::{ArgValue, Args, Catalog, CommandSpec, OptionKind, Surface};
use crate::core::error::CoreError;
use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The longest a `task_claim` call may wait for a matching task, in
/// seconds: below the 60 s time-out common MCP clients apply to a call.
pub const MAX_CLAIM_WAIT_S: i64 = 25;

/// The claim argument that exists on MCP only: how long to wait for a task.
pub const CLAIM_WAIT_ARG: &str = "wait_s";

/// The tool name of a catalog entry: its name with `_` for the space.
pub fn tool_name(spec: &CommandSpec) -> String {
    spec.name.replace(' ', "_")
}

/// Whether `spec` is the claim command (which takes [`CLAIM_WAIT_ARG`]).
pub fn is_claim(spec: &CommandSpec) -> bool {
    spec.ws_type() == "task.claim"
}

/// The catalog entry behind tool `name`, if it is offered over MCP.
pub fn spec_for_tool<'c>(catalog: &'c Catalog, name: &str) -> Option<&'c CommandSpec> {
    catalog
        .commands()
        .iter()
        .find(|s| s.on(Surface::Mcp) && tool_name(s) == name)
}

/// The JSON Schema of one option: type, description, choices, range, length.
fn option_schema(o: &crate::catalog::OptionSpec) -> Value {
    let mut schema = Map::new();
    let kind = match o.kind {
        OptionKind::String | OptionKind::Agent => "string",
        OptionKind::Integer | OptionKind::Task => "integer",
        OptionKind::Boolean => "boolean",
    };
    schema.insert("type".into(), json!(kind));
    schema.insert("description".into(), json!(o.description));
    if !o.choices.is_empty() {
        schema.insert("enum".into(), json!(o.choices));
    }
    if let Some(min) = o.min {
        schema.insert("minimum".into(), json!(min));
    }
    if let Some(max) = o.max {
        schema.insert("maximum".into(), json!(max));
    }
    if let Some(max) = o.max_length {
        schema.insert("maxLength".into(), json!(max));
    }
    if o.required && kind == "string" {
        schema.insert("minLength".into(), json!(1));
    }
    Value::Object(schema)
}

/// The input schema of the tool for `spec`: an object whose properties are
/// the catalog's options, `required` the required ones, no other keys.
pub fn input_schema(spec: &CommandSpec) -> Map<String, Value> {
    let mut properties = Map::new();
    for o in &spec.options {
        properties.insert(o.name.clone(), option_schema(o));
    }
    if is_claim(spec) {
        properties.insert(
            CLAIM_WAIT_ARG.into(),
            json!({
                "type": "integer",
                "description": format!(
                    "Wait up to this many seconds for a matching task (0 to {MAX_CLAIM_WAIT_S}, default 0); \
                     then answers with no task, so call again"
                ),
                "minimum": 0,
                "maximum": MAX_CLAIM_WAIT_S,
            }),
        );
    }
    let required: Vec<&str> = spec
        .options
        .iter()
        .filter(|o| o.required)
        .map(|o| o.name.as_str())
        .collect();
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), json!(required));
    }
    schema.insert("additionalProperties".into(), json!(false));
    schema
}

/// The tool of one catalog entry.
pub fn tool_for(spec: &CommandSpec) -> Tool {
    let mut tool = Tool::new(
        tool_name(spec),
        spec.description.clone(),
        Arc::new(input_schema(spec)),
    );
    let mut hints = ToolAnnotations::new();
    hints.read_only_hint = Some(spec.read_only);
    tool.annotations = Some(hints);
    tool
}

/// Every tool the catalog offers over MCP, in catalog order.
pub fn tools(catalog: &Catalog) -> Vec<Tool> {
    catalog
        .commands()
        .iter()
        .filter(|s| s.on(Surface::Mcp))
        .map(tool_for)
        .collect()
}

/// A tool call's arguments checked against the catalog entry (unknown
/// names, types, required, choices, ranges, lengths), and the claim's
/// wait in seconds (0 when not given). `bad_request` says what was wrong.
pub fn checked_args(
    spec: &CommandSpec,
    arguments: Option<&Map<String, Value>>,
) -> Result<(Args, i64), CoreError> {
    let mut args = Args::new();
    let mut wait_s = 0;
    for (name, value) in arguments.into_iter().flatten() {
        if is_claim(spec) && name == CLAIM_WAIT_ARG {
            wait_s = value
                .as_i64()
                .filter(|w| (0..=MAX_CLAIM_WAIT_S).contains(w))
                .ok_or_else(|| {
                    CoreError::BadRequest(format!(
                        "{CLAIM_WAIT_ARG} must be a whole number from 0 to {MAX_CLAIM_WAIT_S}, got {value}"
                    ))
                })?;
            continue;
        }
        let Some(option) = spec.option(name) else {
            return Err(CoreError::BadRequest(format!(
                "{} has no argument {name:?}; it takes {}",
                tool_name(spec),
                spec.usage()
            )));
        };
        if value.is_null() && !option.required {
            continue;
        }
        let arg = match (option.kind, value) {
            (OptionKind::String | OptionKind::Agent, Value::String(s)) => ArgValue::Str(s.clone()),
            (OptionKind::Integer | OptionKind::Task, v) if v.as_i64().is_some() => {
                ArgValue::Int(v.as_i64().unwrap_or_default())
            }
            (OptionKind::Boolean, Value::Bool(b)) => ArgValue::Bool(*b),
            (kind, other) => {
                return Err(CoreError::BadRequest(format!(
                    "{name} must be {}, got {other}",
                    match kind {
                        OptionKind::String | OptionKind::Agent => "a string",
                        OptionKind::Integer | OptionKind::Task => "a whole number",
                        OptionKind::Boolean => "true or false",
                    }
                )))
            }
        };
        args.insert(name.clone(), arg);
    }
    spec.validate(&args)?;
    Ok((args, wait_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_schema_is_the_catalog_entry_it_comes_from() {
        let catalog = Catalog::embedded().expect("embedded catalog");
        let tools = tools(&catalog);
        let offered: Vec<&CommandSpec> = catalog
            .commands()
            .iter()
            .filter(|s| s.on(Surface::Mcp))
            .collect();
        assert_eq!(tools.len(), offered.len());
        for (tool, spec) in tools.iter().zip(offered) {
            assert_eq!(tool.name, tool_name(spec));
            assert_eq!(tool.description.as_deref(), Some(spec.description.as_str()));
            let schema = tool.input_schema.as_ref();
            assert_eq!(schema["type"], "object");
            assert_eq!(schema["additionalProperties"], false);
            let props = schema["properties"].as_object().expect("properties");
            let extra = usize::from(is_claim(spec));
            assert_eq!(props.len(), spec.options.len() + extra, "{}", spec.name);
            for o in &spec.options {
                let p = &props[&o.name];
                let want_type = match o.kind {
                    OptionKind::String | OptionKind::Agent => "string",
                    OptionKind::Integer | OptionKind::Task => "integer",
                    OptionKind::Boolean => "boolean",
                };
                assert_eq!(p["type"], want_type, "{}.{}", spec.name, o.name);
                assert_eq!(p["description"], o.description.as_str());
                if o.choices.is_empty() {
                    assert!(p.get("enum").is_none());
                } else {
                    assert_eq!(p["enum"], json!(o.choices));
                }
                assert_eq!(p.get("minimum").and_then(Value::as_i64), o.min);
                assert_eq!(p.get("maximum").and_then(Value::as_i64), o.max);
                assert_eq!(
                    p.get("maxLength").and_then(Value::as_u64),
                    o.max_length.map(u64::from)
                );
                let required = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .is_some_and(|r| r.iter().any(|n| n == o.name.as_str()));
                assert_eq!(required, o.required, "{}.{}", spec.name, o.name);
            }
        }
    }

    #[test]
    fn the_tools_the_issue_asks_for_are_offered() {
        let catalog = Catalog::embedded().expect("embedded catalog");
        let names: Vec<String> = tools(&catalog).iter().map(|t| t.name.to_string()).collect();
        for want in [
            "status",
            "agents",
            "task_create",
            "task_list",
            "task_show",
            "task_claim",
            "task_progress",
            "task_done",
            "task_fail",
            "task_release",
            "msg",
            "inbox",
            "broadcast",
            "reason",
            "search",
            "poll_vote",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
    }

    #[test]
    fn arguments_that_break_the_schema_are_refused_with_the_reason() {
        let catalog = Catalog::embedded().expect("embedded catalog");
        let claim = spec_for_tool(&catalog, "task_claim").expect("claim");
        let args = |v: Value| v.as_object().cloned();
        let e = checked_args(claim, args(json!({"wait_s": 26})).as_ref()).unwrap_err();
        assert!(e.to_string().contains("wait_s"), "{e}");
        let (_, wait) = checked_args(claim, args(json!({"wait_s": 3})).as_ref()).expect("ok");
        assert_eq!(wait, 3);
        let show = spec_for_tool(&catalog, "task_show").expect("show");
        let e = checked_args(show, args(json!({"task_id": "x"})).as_ref()).unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
        let e = checked_args(show, None).unwrap_err();
        assert!(e.to_string().contains("required"), "{e}");
        let e = checked_args(show, args(json!({"task_id": 1, "nope": 1})).as_ref()).unwrap_err();
        assert!(e.to_string().contains("no argument \"nope\""), "{e}");
    }
}
