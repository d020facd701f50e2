//! Checking a `#[derive(Event)]` input and writing its `impl Event`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Data, DeriveInput, Error, Fields, Ident, LitStr, Member, Type};

use crate::attr::{self, EventAttrs};
use crate::errors::Errors;

/// The `impl Event` for `input`, or every error found in it (with a placeholder impl, so
/// code that uses the event does not pile further errors on top).
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let attrs = attr::parse(&input.attrs, &mut errors);
    let krate = match &attrs.krate {
        Some(path) => quote!(#path),
        None => quote!(::syncbus),
    };
    let fields = match &input.data {
        Data::Struct(data) => Some(&data.fields),
        Data::Enum(data) => {
            errors.push(Error::new(data.enum_token.span, NOT_A_STRUCT));
            None
        }
        Data::Union(data) => {
            errors.push(Error::new(data.union_token.span, NOT_A_STRUCT));
            None
        }
    };
    check_names(&input.ident, &attrs, &mut errors);
    // What a generic event asks of the fields it reads, beside the trait's own bounds.
    let mut bounds = Vec::new();
    let entity = attrs.entity.as_ref().map(|m| {
        let ty = fields.and_then(|f| field_type(&input.ident, f, m, &mut errors));
        let span = member_span(m);
        bounds.extend(ty.map(|ty| quote_spanned!(span=> #ty: #krate::ToEntityId)));
        entity_fn(&krate, m)
    });
    let version = attrs.version.as_ref().map(|m| {
        let ty = fields.and_then(|f| field_type(&input.ident, f, m, &mut errors));
        let span = member_span(m);
        bounds.extend(ty.map(|ty| {
            quote_spanned!(span=> #ty: ::core::clone::Clone + ::core::convert::Into<::core::primitive::u64>)
        }));
        version_fn(m)
    });
    if let Some(e) = errors.into_error() {
        let placeholder = impl_event(
            input,
            &krate,
            &[],
            quote!(
                const TYPE: &'static str = "-";
            ),
        );
        let e = e.to_compile_error();
        return quote!(#e #placeholder);
    }
    let ty = &attrs.ty;
    let topic = attrs
        .topic
        .as_ref()
        .map(|t| quote!(const TOPIC: &'static str = #t;));
    impl_event(
        input,
        &krate,
        &bounds,
        quote! {
            const TYPE: &'static str = #ty;
            #topic
            #entity
            #version
            #[inline]
            fn encode(
                &self,
            ) -> ::core::option::Option<
                ::core::result::Result<#krate::Encoded, #krate::EncodeError>,
            > {
                // As JSON when the type is `Serialize`, else not encodable (taps then see
                // the metadata alone): autoref picks the first impl that applies.
                #[allow(unused_imports)]
                use #krate::__derive::{NotSerialize as _, ViaSerialize as _};
                (&&#krate::__derive::Probe(self)).__syncbus_encode()
            }
        },
    )
}

const NOT_A_STRUCT: &str = "#[derive(Event)] is for structs: an event type has one `TYPE`, so give each kind of event a struct of its own (or write `impl Event` by hand)";

/// `type` is there and both names pass the runtime's rules; errors point at the literal.
fn check_names(name: &Ident, attrs: &EventAttrs, errors: &mut Errors) {
    let Some(ty) = &attrs.ty else {
        errors.push(Error::new(
            attrs.first.unwrap_or_else(|| name.span()),
            "missing `type` in #[event]: an event needs a type name, such as `#[event(type = \"shop.order.placed\")]`",
        ));
        return;
    };
    let type_ok = check(ty, syncbus_names::check_event_type, errors, "");
    match &attrs.topic {
        Some(topic) => {
            check(topic, syncbus_names::check_topic, errors, "");
        }
        // The trait's default topic is the type, which must then be a topic too.
        None if type_ok => {
            check(
                ty,
                syncbus_names::check_topic,
                errors,
                " (without `topic = \"..\"` the topic is the type)",
            );
        }
        None => {}
    }
}

/// Runs one of the runtime's name checks on `lit`, reporting its `NameError` message there.
fn check(
    lit: &LitStr,
    rule: fn(&str) -> Result<(), syncbus_names::NameError>,
    errors: &mut Errors,
    hint: &str,
) -> bool {
    match rule(&lit.value()) {
        Ok(()) => true,
        Err(e) => {
            errors.push(Error::new(lit.span(), format!("{e}{hint}")));
            false
        }
    }
}

/// The type of the field `member` names, or an error saying which fields there are.
fn field_type<'a>(
    name: &Ident,
    fields: &'a Fields,
    member: &Member,
    errors: &mut Errors,
) -> Option<&'a Type> {
    let found = match (fields, member) {
        (Fields::Named(named), Member::Named(ident)) => {
            named.named.iter().find(|f| f.ident.as_ref() == Some(ident))
        }
        (Fields::Unnamed(unnamed), Member::Unnamed(index)) => {
            unnamed.unnamed.iter().nth(index.index as usize)
        }
        _ => None,
    };
    if let Some(field) = found {
        return Some(&field.ty);
    }
    let shown = match member {
        Member::Named(ident) => ident.to_string(),
        Member::Unnamed(index) => index.index.to_string(),
    };
    let fields_are = match fields {
        Fields::Named(named) => {
            let names: Vec<String> = named
                .named
                .iter()
                .filter_map(|f| f.ident.as_ref().map(|i| format!("`{i}`")))
                .collect();
            format!("its fields are {}", names.join(", "))
        }
        Fields::Unnamed(unnamed) => format!(
            "a tuple struct's fields are numbered, and it has {}",
            unnamed.unnamed.len()
        ),
        Fields::Unit => "it has no fields".to_owned(),
    };
    let span = match member {
        Member::Named(ident) => ident.span(),
        Member::Unnamed(index) => index.span,
    };
    errors.push(Error::new(
        span,
        format!("`{name}` has no field `{shown}`: {fields_are}"),
    ));
    None
}

/// `entity_id` reads the field through `ToEntityId`; a type error points at the attribute.
fn entity_fn(krate: &TokenStream, member: &Member) -> TokenStream {
    let span = member_span(member);
    let read = quote_spanned!(span=> #krate::ToEntityId::to_entity_id(&self.#member));
    quote! {
        #[inline]
        fn entity_id(&self) -> ::core::option::Option<#krate::EntityId> {
            #read
        }
    }
}

/// `version` converts the field into a `u64`.
fn version_fn(member: &Member) -> TokenStream {
    let span = member_span(member);
    let read = quote_spanned! {span=>
        ::core::convert::Into::<::core::primitive::u64>::into(
            ::core::clone::Clone::clone(&self.#member),
        )
    };
    quote! {
        #[inline]
        fn version(&self) -> ::core::option::Option<::core::primitive::u64> {
            ::core::option::Option::Some(#read)
        }
    }
}

fn member_span(member: &Member) -> Span {
    match member {
        Member::Named(ident) => ident.span(),
        Member::Unnamed(index) => index.span,
    }
}

/// `impl Event for` the input with `body`. A generic event asks of its parameters only what
/// the trait asks of the event (`Clone + Send + Sync + 'static`, as a bound on `Self`) and
/// what reading its entity id and version asks of those fields' types (`bounds`).
fn impl_event(
    input: &DeriveInput,
    krate: &TokenStream,
    bounds: &[TokenStream],
    body: TokenStream,
) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let where_clause = if input.generics.params.is_empty() {
        quote!(#where_clause)
    } else {
        let predicates = where_clause.into_iter().flat_map(|w| w.predicates.iter());
        quote! {
            where
                #(#predicates,)*
                #(#bounds,)*
                Self: ::core::clone::Clone + ::core::marker::Send + ::core::marker::Sync + 'static
        }
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Event for #name #ty_generics #where_clause {
            #body
        }
    }
}
