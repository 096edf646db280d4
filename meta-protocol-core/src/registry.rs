//! [`CodecRegistry`]: codecs built by name from configuration, open to user codecs.
//!
//! ```
//! use std::sync::Arc;
//! use meta_protocol_core::{
//!     CodecConfig, CodecRegistry, ConfigError, FrameLimit, HeaderCodec, NewCodec,
//! };
//! # use meta_protocol_core::{BinaryHeader, HeaderProtocol, MessageKind, ErrorReply};
//! # #[derive(BinaryHeader, Clone, Debug)]
//! # struct Tiny { #[field(offset = 0, body_len)] len: u8 }
//! # impl HeaderProtocol for Tiny {
//! #     const NAME: &'static str = "tiny";
//! #     fn kind(&self) -> MessageKind { MessageKind::Request }
//! #     fn error_reply(_: &Self, _: &ErrorReply) -> Option<(Self, bytes::Bytes)> { None }
//! # }
//!
//! let mut registry = CodecRegistry::new();
//! registry.register("tiny", |opts| {
//!     let limit = opts.frame_limit(FrameLimit::new(255));
//!     Ok(HeaderCodec::<Tiny>::factory(limit))
//! })?;
//!
//! let factory = registry.build(&CodecConfig::new("tiny").with_max_frame_size(64))?;
//! let err = registry.build(&CodecConfig::new("tiny").with_option("strict", "yes"));
//! assert_eq!(err.err().map(|e| e.to_string()).as_deref(), Some("codec `tiny`: unknown option `strict`"));
//! # Ok::<(), ConfigError>(())
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::{ConfigError, FrameLimit, NewCodec};

/// How to build one codec: its registered name, an optional frame-size limit, and
/// codec-specific string options (as they appear in the proxy's YAML config).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodecConfig {
    /// The registered codec name (`dubbo`, `thrift`, ...).
    pub name: String,
    /// Largest frame in bytes; `None` keeps the codec's own default.
    pub max_frame_size: Option<usize>,
    /// Codec-specific options. Every key must be understood by the codec.
    pub options: BTreeMap<String, String>,
}

impl CodecConfig {
    /// A config for codec `name` with default options.
    pub fn new(name: impl Into<String>) -> Self {
        CodecConfig {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Sets the frame-size limit.
    pub fn with_max_frame_size(mut self, max: usize) -> Self {
        self.max_frame_size = Some(max);
        self
    }

    /// Adds a codec-specific option.
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }
}

/// The options a codec builder reads. Every option the builder does not read is reported as
/// [`ConfigError::UnknownOption`], so a typo in a config never goes unnoticed.
pub struct CodecOptions<'a> {
    config: &'a CodecConfig,
    read: RefCell<BTreeSet<&'a str>>,
}

impl<'a> CodecOptions<'a> {
    fn new(config: &'a CodecConfig) -> Self {
        CodecOptions {
            config,
            read: RefCell::new(BTreeSet::new()),
        }
    }

    /// The codec's name.
    pub fn codec(&self) -> &str {
        &self.config.name
    }

    /// The configured frame limit, or `default` when none is set.
    pub fn frame_limit(&self, default: FrameLimit) -> FrameLimit {
        self.config.max_frame_size.map_or(default, FrameLimit::new)
    }

    /// The raw value of option `key`, marking it as understood.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        let (k, v) = self.config.options.get_key_value(key)?;
        self.read.borrow_mut().insert(k.as_str());
        Some(v.as_str())
    }

    /// Option `key` parsed as `T`, or `default` when absent.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOption`] naming the key when the value does not parse.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|e: T::Err| self.invalid(key, raw, e)),
        }
    }

    /// Option `key`, which must be one of `choices`; `default` when absent.
    ///
    /// # Errors
    /// [`ConfigError::InvalidOption`] listing the accepted values.
    pub fn choice(
        &self,
        key: &str,
        choices: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => choices
                .iter()
                .find(|c| **c == raw)
                .copied()
                .ok_or_else(|| self.invalid(key, raw, format!("expected one of {choices:?}"))),
        }
    }

    /// A [`ConfigError::InvalidOption`] for `key`.
    pub fn invalid(&self, key: &str, value: &str, reason: impl fmt::Display) -> ConfigError {
        ConfigError::InvalidOption {
            codec: self.config.name.clone(),
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }

    fn first_unread(&self) -> Option<&'a str> {
        let read = self.read.borrow();
        self.config
            .options
            .keys()
            .map(String::as_str)
            .find(|k| !read.contains(k))
    }
}

type BuildFn = dyn Fn(&CodecOptions<'_>) -> Result<Arc<dyn NewCodec>, ConfigError> + Send + Sync;

/// Codec builders by name.
#[derive(Clone, Default)]
pub struct CodecRegistry {
    builders: BTreeMap<String, Arc<BuildFn>>,
}

// === impl CodecRegistry ===

impl CodecRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a builder under `name`.
    ///
    /// # Errors
    /// [`ConfigError::DuplicateCodec`] when `name` is taken.
    pub fn register<F>(&mut self, name: impl Into<String>, build: F) -> Result<(), ConfigError>
    where
        F: Fn(&CodecOptions<'_>) -> Result<Arc<dyn NewCodec>, ConfigError> + Send + Sync + 'static,
    {
        let name = name.into();
        if self.builders.contains_key(&name) {
            return Err(ConfigError::DuplicateCodec(name));
        }
        self.builders.insert(name, Arc::new(build));
        Ok(())
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.builders.keys().map(String::as_str)
    }

    /// Builds the per-connection codec factory that `config` describes.
    ///
    /// # Errors
    /// [`ConfigError::UnknownCodec`] for an unregistered name, [`ConfigError::UnknownOption`]
    /// for an option the codec did not read, and whatever the builder reports.
    pub fn build(&self, config: &CodecConfig) -> Result<Arc<dyn NewCodec>, ConfigError> {
        let Some(build) = self.builders.get(&config.name) else {
            return Err(ConfigError::UnknownCodec {
                name: config.name.clone(),
                known: self.names().collect::<Vec<_>>().join(", "),
            });
        };
        if config.max_frame_size == Some(0) {
            return Err(ConfigError::InvalidOption {
                codec: config.name.clone(),
                key: "max_frame_size".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let opts = CodecOptions::new(config);
        let factory = build(&opts)?;
        if let Some(key) = opts.first_unread() {
            return Err(ConfigError::UnknownOption {
                codec: config.name.clone(),
                key: key.to_owned(),
            });
        }
        Ok(factory)
    }
}

impl fmt::Debug for CodecRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Codec, Role};

    struct Nothing;
    impl Codec for Nothing {
        fn decode(
            &mut self,
            _: &mut bytes::BytesMut,
        ) -> Result<Option<crate::Message>, crate::DecodeError> {
            Ok(None)
        }
        fn encode(
            &mut self,
            _: &crate::Message,
            _: &mut bytes::BytesMut,
        ) -> Result<(), crate::EncodeError> {
            Ok(())
        }
        fn error_reply(
            &mut self,
            _: &crate::RequestContext,
            _: &crate::ErrorReply,
        ) -> Option<crate::Message> {
            None
        }
    }

    fn registry() -> CodecRegistry {
        let mut r = CodecRegistry::new();
        r.register("nothing", |opts| {
            let _depth: u32 = opts.parse_or("depth", 1)?;
            let _mode = opts.choice("mode", &["a", "b"], "a")?;
            Ok(Arc::new(|_: Role| -> Box<dyn Codec> { Box::new(Nothing) }))
        })
        .expect("fresh name");
        r
    }

    #[test]
    fn unknown_codec_lists_known_ones() {
        let err = registry().build(&CodecConfig::new("dubbo")).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("unknown codec `dubbo` (known codecs: nothing)")
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut r = registry();
        let again = r.register("nothing", |_| unreachable!("never built"));
        assert_eq!(again, Err(ConfigError::DuplicateCodec("nothing".into())));
    }

    #[test]
    fn options_are_parsed_and_unknown_ones_rejected() {
        let r = registry();
        assert!(
            r.build(&CodecConfig::new("nothing").with_option("depth", "4"))
                .is_ok()
        );
        let bad = r
            .build(&CodecConfig::new("nothing").with_option("depth", "four"))
            .err();
        assert!(matches!(bad, Some(ConfigError::InvalidOption { ref key, .. }) if key == "depth"));
        let bad = r
            .build(&CodecConfig::new("nothing").with_option("mode", "c"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            bad.as_deref(),
            Some("codec `nothing`: option `mode` = \"c\": expected one of [\"a\", \"b\"]")
        );
        let typo = r
            .build(&CodecConfig::new("nothing").with_option("dpeth", "4"))
            .err();
        assert_eq!(
            typo,
            Some(ConfigError::UnknownOption {
                codec: "nothing".into(),
                key: "dpeth".into()
            })
        );
        let zero = r.build(&CodecConfig::new("nothing").with_max_frame_size(0));
        assert!(zero.is_err());
    }
}
