//! A chat command's arguments: words typed after a Twitch alias, or values
//! Discord collected, checked against the entry's declared options. The
//! checked values then go through the one command parser
//! ([`crate::dispatch::parse::chat_command`]).

use super::spec::{CommandSpec, OptionKind, OptionSpec};
use std::collections::BTreeMap;

/// A typed option value, as a chat front door collected it.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    /// Text.
    Str(String),
    /// A whole number.
    Int(i64),
    /// A flag.
    Bool(bool),
}

/// Option values by name.
pub type Args = BTreeMap<String, ArgValue>;

fn bad(msg: String) -> crate::core::error::CoreError {
    crate::core::error::CoreError::BadRequest(msg)
}

fn parse_token(o: &OptionSpec, tok: &str) -> Result<ArgValue, crate::core::error::CoreError> {
    match o.kind {
        OptionKind::String | OptionKind::Agent => Ok(ArgValue::Str(tok.to_string())),
        OptionKind::Integer | OptionKind::Task => tok
            .trim_start_matches('#')
            .parse::<i64>()
            .map(ArgValue::Int)
            .map_err(|_| bad(format!("{} must be a whole number, got {tok:?}", o.name))),
        OptionKind::Boolean => match tok.to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" | "on" => Ok(ArgValue::Bool(true)),
            "no" | "false" | "0" | "off" => Ok(ArgValue::Bool(false)),
            _ => Err(bad(format!("{} must be yes or no, got {tok:?}", o.name))),
        },
    }
}

impl CommandSpec {
    /// Parses chat text after the alias (`!task 42` → `42`): words fill the
    /// options in order; a text option after which nothing is required takes
    /// the rest of the line. Then validates.
    pub fn parse_positional(&self, text: &str) -> Result<Args, crate::core::error::CoreError> {
        let mut args = Args::new();
        let mut rest = text.trim();
        for (i, o) in self.options.iter().enumerate() {
            if rest.is_empty() {
                break;
            }
            let later_required = self.options[i + 1..].iter().any(|l| l.required);
            // free text takes the rest of the line; a choice is one word
            let takes_rest =
                !later_required && matches!(o.kind, OptionKind::String) && o.choices.is_empty();
            let (tok, tail) = if takes_rest {
                (rest, "")
            } else {
                match rest.split_once(char::is_whitespace) {
                    Some((t, r)) => (t, r.trim_start()),
                    None => (rest, ""),
                }
            };
            args.insert(o.name.clone(), parse_token(o, tok)?);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(bad(format!("too many arguments; usage: {}", self.usage())));
        }
        self.validate(&args)?;
        Ok(args)
    }

    /// Checks values against the declared options: required ones present,
    /// types, choices, ranges and lengths; unknown names refused.
    pub fn validate(&self, args: &Args) -> Result<(), crate::core::error::CoreError> {
        for name in args.keys() {
            if self.option(name).is_none() {
                return Err(bad(format!("{} has no option {name:?}", self.name)));
            }
        }
        for o in &self.options {
            let Some(v) = args.get(&o.name) else {
                if o.required {
                    return Err(bad(format!(
                        "{} is required; usage: {}",
                        o.name,
                        self.usage()
                    )));
                }
                continue;
            };
            match (o.kind, v) {
                (OptionKind::String | OptionKind::Agent, ArgValue::Str(s)) => {
                    let n = s.chars().count();
                    if let Some(max) = o.max_length {
                        if n > max as usize {
                            return Err(bad(format!("{} is limited to {max} characters", o.name)));
                        }
                    }
                    if o.required && s.trim().is_empty() {
                        return Err(bad(format!("{} must not be empty", o.name)));
                    }
                    if !o.choices.is_empty() && !o.choices.iter().any(|c| c == s) {
                        return Err(bad(format!(
                            "{} must be one of {}",
                            o.name,
                            o.choices.join(", ")
                        )));
                    }
                }
                (OptionKind::Integer | OptionKind::Task, ArgValue::Int(i)) => {
                    if o.min.is_some_and(|m| *i < m) || o.max.is_some_and(|m| *i > m) {
                        return Err(bad(format!(
                            "{} must be between {} and {}",
                            o.name,
                            o.min.map_or("-inf".into(), |m| m.to_string()),
                            o.max.map_or("inf".into(), |m| m.to_string())
                        )));
                    }
                }
                (OptionKind::Boolean, ArgValue::Bool(_)) => {}
                _ => return Err(bad(format!("{} has the wrong type", o.name))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::core::command::Command;

    #[test]
    fn positional_text_fills_options_and_the_last_takes_the_rest() {
        let c = Catalog::embedded().unwrap();
        let spec = c.by_twitch_alias("broadcast").unwrap();
        let args = spec.parse_positional("deploy is done, thanks all").unwrap();
        assert_eq!(
            args["text"],
            ArgValue::Str("deploy is done, thanks all".into())
        );
        let spec = c.by_twitch_alias("task").unwrap();
        let args = spec.parse_positional("#42").unwrap();
        match crate::dispatch::parse::chat_command(spec.ws_type(), &args).unwrap() {
            Command::TaskGet { task_id } => assert_eq!(task_id, 42),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_choice_is_one_word_and_the_options_after_it_still_parse() {
        let c = Catalog::embedded().unwrap();
        let spec = c.by_twitch_alias("tasks").unwrap();
        let args = spec.parse_positional("open agent-1 5").unwrap();
        assert_eq!(args["state"], ArgValue::Str("open".into()));
        assert_eq!(args["assignee"], ArgValue::Str("agent-1".into()));
        assert_eq!(args["limit"], ArgValue::Int(5));
    }

    #[test]
    fn bad_values_get_clear_errors() {
        let c = Catalog::embedded().unwrap();
        let spec = c.by_twitch_alias("task").unwrap();
        assert!(spec
            .parse_positional("abc")
            .unwrap_err()
            .to_string()
            .contains("whole number"));
        assert!(spec
            .parse_positional("")
            .unwrap_err()
            .to_string()
            .contains("required"));
        assert!(spec
            .parse_positional("0")
            .unwrap_err()
            .to_string()
            .contains("between"));
        let list = c.by_twitch_alias("tasks").unwrap();
        assert!(list
            .parse_positional("sideways")
            .unwrap_err()
            .to_string()
            .contains("one of"));
    }
}
