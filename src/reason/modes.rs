//! The five reasoning modes and the system prompt + sampling preset each one
//! sends to the backend.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ReasonConfigError;

/// How the reasoner should think about a prompt; each mode is a system prompt
/// and temperature preset (see [`ModePreset`]). The protocol names them in
/// lowercase (`analytical`, `creative`, `technical`, `strategic`, `simple`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Step-by-step analysis with stated assumptions; low temperature.
    Analytical,
    /// Ideas and alternatives; high temperature.
    Creative,
    /// Exact engineering answers, code and commands; lowest temperature.
    Technical,
    /// Options, trade-offs, risks and a recommendation.
    Strategic,
    /// A short answer in plain words for a newcomer.
    Simple,
}

impl Mode {
    /// Every mode, in the order the protocol lists them.
    pub const ALL: [Mode; 5] = [
        Mode::Analytical,
        Mode::Creative,
        Mode::Technical,
        Mode::Strategic,
        Mode::Simple,
    ];

    /// The protocol name of the mode (lowercase), also used in cache keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Analytical => "analytical",
            Mode::Creative => "creative",
            Mode::Technical => "technical",
            Mode::Strategic => "strategic",
            Mode::Simple => "simple",
        }
    }

    /// The preset this mode uses when the configuration does not override it.
    pub fn builtin_preset(self) -> ModePreset {
        let (system_prompt, temperature, top_p, max_tokens) = match self {
            Mode::Analytical => (
                "You are a careful analyst. Break the question into its parts, reason step by step \
                 from the evidence given, state your assumptions, and end with a clear conclusion.",
                0.2,
                None,
                None,
            ),
            Mode::Creative => (
                "You are an inventive collaborator. Offer several original ideas or angles, \
                 vivid but relevant, and say briefly why each could work.",
                0.9,
                Some(0.95),
                None,
            ),
            Mode::Technical => (
                "You are a precise senior engineer. Answer exactly and concretely, with code, \
                 commands or configuration where they help, and mention pitfalls.",
                0.1,
                None,
                None,
            ),
            Mode::Strategic => (
                "You are a strategic advisor. Lay out the options, their trade-offs, risks and \
                 second-order effects, then recommend one course of action and say why.",
                0.4,
                None,
                None,
            ),
            Mode::Simple => (
                "Answer in a few short sentences of plain words that a newcomer understands. \
                 No jargon, no lists unless asked.",
                0.3,
                None,
                Some(300),
            ),
        };
        ModePreset {
            system_prompt: system_prompt.to_owned(),
            temperature,
            top_p,
            max_tokens,
        }
    }
}

/// A mode name that is none of the five; its message lists the valid names so
/// a front door can pass it to the user as a `bad_request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode `{0}`; expected one of analytical, creative, technical, strategic, simple")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    /// Parses the lowercase protocol name; surrounding whitespace and case are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Mode::ALL
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one mode sends to the backend: the system message and sampling settings.
/// A preset given in the configuration replaces the built-in preset of that
/// mode as a whole (`top_p` and `max_tokens` may be left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModePreset {
    /// The system message sent before the user's prompt.
    pub system_prompt: String,
    /// Sampling temperature, 0.0 to 2.0.
    pub temperature: f32,
    /// Nucleus sampling, in (0, 1]; omitted from the request when `None`.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Upper bound on answer tokens; omitted (backend default) when `None`.
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// The resolved preset of every mode, built once from the built-ins and the
/// configuration's overrides.
#[derive(Debug, Clone)]
pub(crate) struct ModePresets {
    by_mode: [ModePreset; 5],
}

impl ModePresets {
    /// Merges `overrides` (keyed by lowercase mode name) over the built-ins,
    /// rejecting unknown mode names and out-of-range sampling values.
    pub(crate) fn resolve(
        overrides: &BTreeMap<String, ModePreset>,
    ) -> Result<Self, ReasonConfigError> {
        let mut by_mode = Mode::ALL.map(Mode::builtin_preset);
        for (name, preset) in overrides {
            let mode: Mode = name.parse()?;
            validate_preset(mode, preset)?;
            by_mode[mode as usize] = preset.clone();
        }
        Ok(Self { by_mode })
    }

    /// The preset to use for `mode`.
    pub(crate) fn get(&self, mode: Mode) -> &ModePreset {
        &self.by_mode[mode as usize]
    }
}

fn validate_preset(mode: Mode, preset: &ModePreset) -> Result<(), ReasonConfigError> {
    let invalid = |why: &str| ReasonConfigError::InvalidPreset {
        mode: mode.as_str(),
        why: why.to_owned(),
    };
    if preset.system_prompt.trim().is_empty() {
        return Err(invalid("system_prompt is empty"));
    }
    if !(0.0..=2.0).contains(&preset.temperature) {
        return Err(invalid("temperature must be between 0.0 and 2.0"));
    }
    if let Some(top_p) = preset.top_p {
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(invalid("top_p must be in (0, 1]"));
        }
    }
    if preset.max_tokens == Some(0) {
        return Err(invalid("max_tokens must be at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip_through_from_str_and_display() {
        for mode in Mode::ALL {
            assert_eq!(mode.to_string().parse::<Mode>().ok(), Some(mode));
        }
        assert_eq!(" Creative ".parse::<Mode>().ok(), Some(Mode::Creative));
        assert!("poetic".parse::<Mode>().is_err());
    }

    #[test]
    fn configured_preset_replaces_only_its_own_mode() {
        let custom = ModePreset {
            system_prompt: "Be terse.".into(),
            temperature: 0.0,
            top_p: None,
            max_tokens: Some(50),
        };
        let overrides = BTreeMap::from([("simple".to_owned(), custom.clone())]);
        let presets = ModePresets::resolve(&overrides).expect("valid override");
        assert_eq!(presets.get(Mode::Simple), &custom);
        assert_eq!(
            presets.get(Mode::Creative),
            &Mode::Creative.builtin_preset()
        );
    }

    #[test]
    fn unknown_mode_or_bad_temperature_in_overrides_is_rejected() {
        let mut preset = Mode::Simple.builtin_preset();
        let unknown = BTreeMap::from([("poetic".to_owned(), preset.clone())]);
        assert!(ModePresets::resolve(&unknown).is_err());
        preset.temperature = 3.0;
        let hot = BTreeMap::from([("simple".to_owned(), preset)]);
        assert!(ModePresets::resolve(&hot).is_err());
    }
}
