//! Collecting every error of one derive instead of stopping at the first.

use std::fmt::Display;

use quote::ToTokens;

/// The errors found so far; each phase reports all of its errors at once.
#[derive(Default)]
pub(crate) struct Errors {
    first: Option<syn::Error>,
    count: usize,
}

impl Errors {
    /// Adds `error`.
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.count += 1;
        match &mut self.first {
            Some(first) => first.combine(error),
            None => self.first = Some(error),
        }
    }

    /// Adds an error spanning `tokens`.
    pub(crate) fn at(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// How many errors were reported, to tell whether a step added one.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// `Err` with everything reported so far, if anything was; for phases that cannot go on.
    pub(crate) fn check(&mut self) -> syn::Result<()> {
        match self.first.take() {
            Some(e) => {
                self.count = 0;
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// `Ok(value)` when nothing was reported, otherwise all the errors.
    pub(crate) fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.first {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}
