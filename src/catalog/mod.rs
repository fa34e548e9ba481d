//! The command catalog: every command declared once in `commands/*.toml`
//! (name, description, options, role, rate class, platforms, Twitch alias).
//! Discord registration, Twitch parsing, role checks, rate classes and help
//! texts all read it. It is embedded in the binary and can be replaced by a
//! directory (`catalog.dir`). An invalid catalog stops start-up with an
//! error naming the file, the command and the problem.
//!
//! [`spec`] is what one entry declares, [`load`] reads and validates the
//! files, [`args`] turns a chat command's words into checked option values.

pub mod args;
pub mod load;
pub mod spec;

pub use args::{ArgValue, Args};
pub use load::{Catalog, CatalogError, EMBEDDED};
pub use spec::{CommandSpec, OptionKind, OptionSpec, Surface};
