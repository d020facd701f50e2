//! Reading `#[event(..)]`: which keys were given, each with the tokens it came from, so every
//! later error can point at what the user wrote.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Error, LitStr, Member, Meta, Path, Result};

use crate::errors::Errors;

/// The keys of every `#[event(..)]` on the item.
#[derive(Default)]
pub(crate) struct EventAttrs {
    /// `type = ".."`: the event's type name.
    pub(crate) ty: Option<LitStr>,
    /// `topic = ".."`: its default topic.
    pub(crate) topic: Option<LitStr>,
    /// `entity = field`: the field the entity id is read from.
    pub(crate) entity: Option<Member>,
    /// `version = field`: the field the version is read from.
    pub(crate) version: Option<Member>,
    /// `crate = path`: where the `syncbus` items are.
    pub(crate) krate: Option<Path>,
    /// The parentheses of the first `#[event(..)]`, where an error about a missing key points.
    pub(crate) first: Option<Span>,
}

const KEYS: &str = "`type`, `topic`, `entity`, `version` or `crate`";

/// Reads every `#[event(..)]` in `attrs`; a bad key does not stop the others being read.
pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> EventAttrs {
    let mut out = EventAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
        out.first.get_or_insert_with(|| match &attr.meta {
            // The whole `(..)`, where a missing key belongs.
            Meta::List(list) => list.delimiter.span().join(),
            meta => meta.path().span(),
        });
        let parsed = attr.parse_nested_meta(|meta| {
            let key = match meta.path.get_ident() {
                Some(ident) => ident.to_string(),
                None => {
                    let path = &meta.path;
                    let shown = quote::quote!(#path).to_string().replace(' ', "");
                    return Err(meta.error(format!(
                        "unknown key `{shown}` in #[event]: expected {KEYS}"
                    )));
                }
            };
            let duplicate = || meta.error(format!("duplicate `{key}` in #[event]"));
            match key.as_str() {
                "type" if out.ty.is_some() => Err(duplicate()),
                "type" => {
                    out.ty = Some(meta.value()?.parse()?);
                    Ok(())
                }
                "topic" if out.topic.is_some() => Err(duplicate()),
                "topic" => {
                    out.topic = Some(meta.value()?.parse()?);
                    Ok(())
                }
                "entity" if out.entity.is_some() => Err(duplicate()),
                "entity" => {
                    out.entity = Some(field(meta.value()?, &key)?);
                    Ok(())
                }
                "version" if out.version.is_some() => Err(duplicate()),
                "version" => {
                    out.version = Some(field(meta.value()?, &key)?);
                    Ok(())
                }
                "crate" if out.krate.is_some() => Err(duplicate()),
                "crate" => {
                    let value = meta.value()?;
                    // serde spells it `crate = "path"`; take that too.
                    out.krate = Some(if value.peek(LitStr) {
                        value.parse::<LitStr>()?.parse()?
                    } else {
                        value.parse()?
                    });
                    Ok(())
                }
                _ => Err(meta.error(format!("unknown key `{key}` in #[event]: expected {KEYS}"))),
            }
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    out
}

/// A field named by `entity = ..` or `version = ..`: its name, or its index in a tuple struct.
fn field(value: syn::parse::ParseStream<'_>, key: &str) -> Result<Member> {
    if value.peek(LitStr) {
        let lit: LitStr = value.parse()?;
        return Err(Error::new(
            lit.span(),
            format!(
                "`{key}` names a field without quotes: `{key} = {}`",
                lit.value()
            ),
        ));
    }
    value.parse()
}
