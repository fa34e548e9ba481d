//! Repairs the IRCv3 tags of a raw line from the Twitch server before
//! twitch-irc parses it, and the socket wrapper that does so for every line
//! that comes in.
//!
//! twitch-irc 6.1.3 panics on two tag values that only the server writes,
//! so only a hostile or tampered server sends them (found by fuzzing,
//! `docs/reliability.md`):
//!
//! - `color`: it checks the length in bytes, then slices bytes 1..3, 3..5
//!   and 5..7, so `#　000` (a multi-byte character) panics with "byte index
//!   is not a char boundary";
//! - `emotes`: for a range `from-to` it computes `to + 1 - from`, which
//!   overflows (a panic in builds with overflow checks) when `to < from` or
//!   `to` is `usize::MAX`.
//!
//! [`repair_tags`] blanks such a value (an empty `color` is "no colour", an
//! empty `emotes` is "no emotes"), so the message is still handled; every
//! other byte of the line stays as it was. [`Repaired`] runs it on each
//! line read from the connection.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest line [`Repaired`] holds to repair: twice the IRCv3 limit
/// for tags (8,191 bytes) plus the 512 bytes of the rest. A longer line is
/// repaired if its tags end within this much (see [`Repaired`]).
pub const MAX_HELD_LINE: usize = 2 * 8_191 + 512;

/// True when `value` (as written on the wire) is a colour twitch-irc reads
/// without panicking: `#` and exactly six ASCII hex digits.
fn color_is_safe(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 7 && b[0] == b'#' && b[1..].iter().all(u8::is_ascii_hexdigit)
}

/// True when twitch-irc's range arithmetic cannot overflow on `value`
/// (as written on the wire): every `from-to` after an `id:` has numbers
/// with `from <= to < usize::MAX`. No backslash, so the decoded value is
/// the same text. A value twitch-irc refuses with an error (no `:`, a
/// non-number) is left to it.
fn emotes_are_safe(value: &str) -> bool {
    if value.contains('\\') {
        return false;
    }
    value.split('/').all(|emote| {
        let Some((_, ranges)) = emote.split_once(':') else {
            return true;
        };
        ranges.split(',').all(|range| {
            let Some((from, to)) = range.split_once('-') else {
                return true;
            };
            match (from.parse::<usize>(), to.parse::<usize>()) {
                (Ok(from), Ok(to)) => from <= to && to < usize::MAX,
                _ => true,
            }
        })
    })
}

/// True when twitch-irc can read tag `key` with `value` without panicking.
fn tag_is_safe(key: &str, value: &str) -> bool {
    match key {
        "color" => value.is_empty() || color_is_safe(value),
        "emotes" => emotes_are_safe(value),
        _ => true,
    }
}

/// A raw IRC line (without its line ending) with every tag value
/// twitch-irc 6.1.3 would panic on blanked (`color` not `#` and six hex
/// digits, `emotes` with a range that overflows); the line unchanged (and
/// borrowed) when there is nothing to repair. Tags are found as twitch-irc
/// finds them: after a leading `@`, up to the first space.
pub fn repair_tags(line: &str) -> Cow<'_, str> {
    let Some(rest) = line.strip_prefix('@') else {
        return Cow::Borrowed(line);
    };
    let Some((tags, after)) = rest.split_once(' ') else {
        return Cow::Borrowed(line);
    };
    let unsafe_tag = |tag: &str| {
        let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
        !tag_is_safe(key, value)
    };
    if !tags.split(';').any(unsafe_tag) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    out.push('@');
    for (i, tag) in tags.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        if unsafe_tag(tag) {
            let key = tag.split_once('=').map_or(tag, |(k, _)| k);
            out.push_str(key);
            out.push('=');
        } else {
            out.push_str(tag);
        }
    }
    out.push(' ');
    out.push_str(after);
    Cow::Owned(out)
}

/// [`repair_tags`] on a line of bytes; a line that is not UTF-8 is passed
/// on as it is (twitch-irc refuses it as it would without us).
fn repair_bytes(line: &[u8]) -> Cow<'_, [u8]> {
    match std::str::from_utf8(line) {
        Ok(text) => match repair_tags(text) {
            Cow::Borrowed(_) => Cow::Borrowed(line),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        },
        Err(_) => Cow::Borrowed(line),
    }
}

/// A connection whose read side hands on whole lines, each through
/// [`repair_tags`]; writes pass straight through. A partial line at the end
/// of the stream is repaired and handed on. At most [`MAX_HELD_LINE`] bytes
/// of a line are held: a longer line is repaired up to the end of its tags
/// (the rest, command and parameters, is never changed) and the rest is
/// passed on as it comes, as twitch-irc would read it; a line whose tags
/// alone are longer cannot be checked in that much memory and is dropped
/// with a warning (no real server sends one: IRCv3 allows 8,191 bytes).
pub struct Repaired<S> {
    inner: S,
    /// Bytes read and not yet handed on whole (no line end seen).
    held: Vec<u8>,
    /// Repaired bytes ready to hand on, from `ready_at`.
    ready: Vec<u8>,
    ready_at: usize,
    /// Inside a long line: pass bytes on until its line end.
    passing: bool,
    /// Inside a line whose tags were too long: drop bytes until its line end.
    dropping: bool,
    eof: bool,
}

impl<S> Repaired<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Repaired<S> {
        Repaired {
            inner,
            held: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            passing: false,
            dropping: false,
            eof: false,
        }
    }

    /// Moves what arrived in `chunk` to `ready`, repairing each whole line.
    fn take_in(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            if self.passing || self.dropping {
                let end = newline.map_or(chunk.len(), |i| i + 1);
                if self.passing {
                    self.ready.extend_from_slice(&chunk[..end]);
                }
                if newline.is_some() {
                    self.passing = false;
                    self.dropping = false;
                }
                chunk = &chunk[end..];
                continue;
            }
            match newline {
                Some(i) => {
                    self.held.extend_from_slice(&chunk[..i]);
                    let line = std::mem::take(&mut self.held);
                    self.ready.extend_from_slice(&repair_bytes(&line));
                    self.ready.push(b'\n');
                    self.held = line;
                    self.held.clear();
                    chunk = &chunk[i + 1..];
                }
                None => {
                    let room = MAX_HELD_LINE - self.held.len();
                    let take = chunk.len().min(room);
                    self.held.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if self.held.len() >= MAX_HELD_LINE {
                        self.overlong();
                    }
                }
            }
        }
    }

    /// `held` reached [`MAX_HELD_LINE`] without a line end.
    fn overlong(&mut self) {
        let held = std::mem::take(&mut self.held);
        if held.first() != Some(&b'@') {
            self.ready.extend_from_slice(&held);
            self.passing = true;
        } else if let Some(space) = held.iter().position(|&b| b == b' ') {
            // Repair the tags (and the space after them); the rest as it is.
            self.ready.extend_from_slice(&repair_bytes(&held[..=space]));
            self.ready.extend_from_slice(&held[space + 1..]);
            self.passing = true;
        } else {
            tracing::warn!(
                platform = "twitch",
                max_bytes = MAX_HELD_LINE,
                "twitch: dropped a line from the server whose tags are too long"
            );
            self.dropping = true;
        }
        self.held = held;
        self.held.clear();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Repaired<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_at);
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if got.is_empty() {
                        // `held` is empty while passing or dropping a line.
                        this.eof = true;
                        let last = std::mem::take(&mut this.held);
                        this.ready.extend_from_slice(&repair_bytes(&last));
                    } else {
                        this.take_in(got);
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Repaired<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const BAD_COLOUR: &str = "@badges=;color=#\u{3000}000;display-name=Bob;emotes= :bob!bob@bob.tmi.twitch.tv PRIVMSG #chan :!status";

    #[test]
    fn a_colour_with_a_multi_byte_character_is_blanked_and_the_rest_kept() {
        assert_eq!(
            repair_tags(BAD_COLOUR),
            "@badges=;color=;display-name=Bob;emotes= :bob!bob@bob.tmi.twitch.tv PRIVMSG #chan :!status"
        );
    }

    #[test]
    fn colours_that_are_not_hash_and_six_hex_digits_are_blanked() {
        for bad in [
            "#12345",
            "#1234567",
            "123456#",
            "#12345g",
            "#\\s12345",
            "#é1234",
            "#１２３",
        ] {
            let line = format!("@color={bad};id=1 :tmi.twitch.tv USERSTATE #chan");
            assert_eq!(
                repair_tags(&line),
                "@color=;id=1 :tmi.twitch.tv USERSTATE #chan",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_good_or_empty_colour_is_kept_and_the_line_borrowed() {
        for line in [
            "@color=#1E90FF;id=1 :a!a@a PRIVMSG #c :hi",
            "@color=#abcdef :a!a@a PRIVMSG #c :hi",
            "@color=;id=1 :a!a@a PRIVMSG #c :hi",
            "@color :a!a@a PRIVMSG #c :hi",
        ] {
            assert!(
                matches!(repair_tags(line), Cow::Borrowed(l) if l == line),
                "{line}"
            );
        }
    }

    #[test]
    fn other_tags_and_the_message_text_are_untouched() {
        let line = "@badges=moderator/1;display-name=Zoë\\sX;color=#é12345;flair=#\u{3000}00 :z!z@z PRIVMSG #c :color=#\u{3000}000 stays";
        assert_eq!(
            repair_tags(line),
            "@badges=moderator/1;display-name=Zoë\\sX;color=;flair=#\u{3000}00 :z!z@z PRIVMSG #c :color=#\u{3000}000 stays"
        );
    }

    #[test]
    fn a_line_without_tags_or_without_a_space_after_them_is_unchanged() {
        for line in [
            ":tmi.twitch.tv 001 bot :Welcome, GLHF!",
            "PING :tmi.twitch.tv",
            "",
            "@color=#\u{3000}000",
            ":a!a@a PRIVMSG #c :@color=#\u{3000}000 x",
        ] {
            assert!(
                matches!(repair_tags(line), Cow::Borrowed(l) if l == line),
                "{line}"
            );
        }
    }

    #[test]
    fn emote_ranges_that_overflow_are_blanked_and_good_ones_kept() {
        let good = "@emotes=25:0-4,12-16/1902:6-10 :a!a@a PRIVMSG #c :Kappa Keepo Kappa";
        assert_eq!(repair_tags(good), good);
        for bad in [
            "25:5-2",
            "25:0-18446744073709551615",
            "25:0-4/1:9-1",
            "25:1-\\0",
        ] {
            let line = format!("@emotes={bad};id=1 :a!a@a PRIVMSG #c :Kappa");
            assert_eq!(
                repair_tags(&line),
                "@emotes=;id=1 :a!a@a PRIVMSG #c :Kappa",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_line_the_fuzzer_found_becomes_a_privmsg_without_a_colour() {
        use twitch_irc::message::{IRCMessage, ServerMessage};
        let found = include_str!(
            "../../../fuzz/regressions/twitch_irc/crash-aacda170a68839642a0d78d004551e4a89a1241f"
        );
        let line = repair_tags(found.trim_end_matches(['\r', '\n']));
        let irc = IRCMessage::parse(&line).expect("parses");
        match ServerMessage::try_from(irc) {
            Ok(ServerMessage::Privmsg(m)) => {
                assert_eq!(m.name_color, None);
                assert_eq!(m.sender.name, "Bob");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Hands out at most 3 bytes per read, so lines arrive in pieces.
    struct Trickle<'a>(&'a [u8]);

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.0.len().min(3).min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Poll::Ready(Ok(()))
        }
    }

    async fn read_all(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Repaired::new(Trickle(input))
            .read_to_end(&mut out)
            .await
            .expect("reads");
        out
    }

    #[tokio::test]
    async fn the_socket_repairs_every_line_arriving_in_pieces_and_keeps_line_ends() {
        let input = format!("PING :x\r\n{BAD_COLOUR}\r\n\n@color=#\u{3000}0 :a PRIVMSG #c :end");
        let want = format!(
            "PING :x\r\n{}\r\n\n@color= :a PRIVMSG #c :end",
            repair_tags(BAD_COLOUR)
        );
        assert_eq!(
            String::from_utf8(read_all(input.as_bytes()).await).unwrap(),
            want
        );
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_pass_through() {
        let input = b"@color=#\xff\xfe0000 :a PRIVMSG #c :x\r\nPING :y\r\n";
        assert_eq!(read_all(input).await, input);
    }

    #[tokio::test]
    async fn a_line_longer_than_the_limit_is_repaired_in_its_tags_and_passed_on() {
        let text = "x".repeat(MAX_HELD_LINE * 2);
        let input = format!(
            "@color=#\u{3000}000 :a!a@a PRIVMSG #c :{text}\r\nPING :y\r\n:a PRIVMSG #c :{text}\n"
        );
        let want =
            format!("@color= :a!a@a PRIVMSG #c :{text}\r\nPING :y\r\n:a PRIVMSG #c :{text}\n");
        assert_eq!(
            String::from_utf8(read_all(input.as_bytes()).await).unwrap(),
            want
        );
    }

    #[tokio::test]
    async fn a_line_whose_tags_exceed_the_limit_is_dropped_and_the_next_kept() {
        let tags = "a=b;".repeat(MAX_HELD_LINE);
        let input = format!("@{tags}color=#\u{3000}000 :a PRIVMSG #c :x\r\nPING :y\r\n");
        assert_eq!(read_all(input.as_bytes()).await, b"PING :y\r\n");
    }
}
