//! A listing's answer (`GET /p/entity/operations`), read in one pass over its body: the
//! envelope, the list and each document's fields together. A page whose envelope is broken is
//! an error, through [`classify`] (the one table of answers); one odd document inside a good
//! page is one [`Fetched::Bad`] item and never spoils the others.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{API, PAGE_SIZE, build, classify, parse_amount};
use crate::domain::Fee;
use crate::source::{Fetched, Page, SourceError};

/// Read a listing answer in one pass over its body: the envelope, the list and each document's
/// fields together (a page is 50 documents of about 700 bytes; reading the envelope, then the
/// list, then each document took four passes and a copy, 15 % of a `sync`'s instructions).
/// Anything but a good `{result: true, data: {docs: [...]}}` goes to [`classify`] and
/// [`parse_list`], the one table of answers, for its error.
pub(super) fn read_list(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Page, SourceError> {
    #[derive(Deserialize)]
    struct ListEnvelope<'a> {
        result: Option<bool>,
        #[serde(borrow)]
        data: Option<ListDocs<'a>>,
    }
    #[derive(Deserialize)]
    struct ListDocs<'a> {
        #[serde(borrow)]
        docs: Vec<DocSlot<'a>>,
    }
    if (200..300).contains(&status)
        && let Ok(ListEnvelope {
            result: Some(true),
            data: Some(list),
        }) = serde_json::from_slice::<ListEnvelope>(body)
    {
        return Ok(page_of_slots(list.docs));
    }
    let data = classify(status, retry_after, &String::from_utf8_lossy(body))?;
    parse_list(&data)
}

/// Parse the `data` of a listing. A page whose envelope is broken is an error; a single broken
/// document inside a good page is a [`Fetched::Bad`] item.
pub fn parse_list(data: &str) -> Result<Page, SourceError> {
    #[derive(Deserialize)]
    struct ListData<'a> {
        #[serde(borrow)]
        docs: Vec<DocSlot<'a>>,
    }
    let list: ListData = serde_json::from_str(data).map_err(|e| SourceError::Malformed {
        api: API,
        message: format!("listing has no docs array: {e}"),
    })?;
    Ok(page_of_slots(list.docs))
}

fn page_of_slots(docs: Vec<DocSlot<'_>>) -> Page {
    let is_last = docs.len() < PAGE_SIZE;
    let items = docs.into_iter().map(DocSlot::into_fetched).collect();
    Page {
        items,
        is_last,
        total: None,
    }
}

/// One element of a listing's `docs`, read whatever it holds: the fields we use as raw JSON
/// (each then checked and reported on its own), anything else skipped, and an element that is
/// no object remembered as such. Reading never fails on a well-formed page, so one odd document
/// cannot spoil the page it is on.
enum DocSlot<'a> {
    Doc(Box<WireOp<'a>>),
    NotAnObject(&'static str),
}

/// A list document's fields, as their JSON text.
#[derive(Default)]
struct WireOp<'a> {
    uid: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    status: Option<&'a RawValue>,
    total: Option<&'a RawValue>,
    currency: Option<&'a RawValue>,
    reference: Option<&'a RawValue>,
    created: Option<&'a RawValue>,
    updated: Option<&'a RawValue>,
    /// Read for its `entity_charges` only (see [`entity_charges`]).
    totals: Option<&'a RawValue>,
}

/// The keys of a list document [`DocSlot`] keeps (matched without allocating).
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum DocField {
    Uid,
    Id,
    Status,
    Total,
    Currency,
    Reference,
    Created,
    Updated,
    Totals,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for DocSlot<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SlotVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for SlotVisitor<'a> {
            type Value = DocSlot<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an operation document")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut w = WireOp::default();
                while let Some(key) = m.next_key::<DocField>()? {
                    let slot = match key {
                        DocField::Uid => &mut w.uid,
                        DocField::Id => &mut w.id,
                        DocField::Status => &mut w.status,
                        DocField::Total => &mut w.total,
                        DocField::Currency => &mut w.currency,
                        DocField::Reference => &mut w.reference,
                        DocField::Created => &mut w.created,
                        DocField::Updated => &mut w.updated,
                        DocField::Totals => &mut w.totals,
                        DocField::Other => {
                            m.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(m.next_value::<&'de RawValue>()?);
                }
                Ok(DocSlot::Doc(Box::new(w)))
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut s: S,
            ) -> Result<Self::Value, S::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(DocSlot::NotAnObject("an array"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(DocSlot::NotAnObject("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(DocSlot::NotAnObject("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(DocSlot::NotAnObject("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(DocSlot::NotAnObject("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(DocSlot::NotAnObject("a string"))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(DocSlot::NotAnObject("null"))
            }
        }
        d.deserialize_any(SlotVisitor(std::marker::PhantomData))
    }
}

impl DocSlot<'_> {
    fn into_fetched(self) -> Fetched {
        let w = match self {
            DocSlot::Doc(w) => w,
            DocSlot::NotAnObject(what) => {
                return Fetched::Bad {
                    uid: None,
                    reason: format!("unreadable operation: {what}, not an object"),
                };
            }
        };
        // The id for a bad document's record: `uid`, else `id`, if either is a non-blank string.
        let id_of = |raw: Option<&RawValue>| {
            raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok())
                .filter(|u| !u.trim().is_empty())
        };
        let uid = id_of(w.uid).or_else(|| id_of(w.id));
        let strings = (|| {
            Ok::<_, String>((
                text_field("uid", w.uid)?,
                text_field("reference", w.reference)?,
                text_field("created", w.created)?,
                text_field("updated", w.updated)?,
            ))
        })();
        let built = strings.and_then(|(raw_uid, reference, created, updated)| {
            let mut op = build(
                raw_uid, w.status, w.total, w.currency, reference, created, updated,
            )?;
            op.fees = entity_charges(w.totals)?;
            Ok(op)
        });
        match built {
            Ok(op) => Fetched::Op(op),
            Err(reason) => Fetched::Bad { uid, reason },
        }
    }
}

/// A string field (absent and `null` are `None`); another type is the document's fault.
fn text_field(name: &str, raw: Option<&RawValue>) -> Result<Option<String>, String> {
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) => serde_json::from_str::<String>(r.get())
            .map(Some)
            .map_err(|_| format!("unreadable operation: {name} {} is not a string", r.get())),
    }
}

/// The merchant's charges on an operation: `totals.entity_charges`, an object of named amounts
/// (`source`, `installment`, `service`; mobbex-api.md §2), each read from its exact text into
/// one [`Fee`] named after its key, in the document's order. They are in list documents only
/// (the single-operation answer has no `totals`, §3a). `totals.user_charges` and
/// `totals.financial` are what the *buyer* pays on top (financing): part of `total`, not kept
/// from the merchant, so not fees.
///
/// Absent, `null` or `{}`: no fees; a `null` charge is none. A charge that is not an amount makes
/// the document unreadable rather than being dropped: dropping it would book the gross amount
/// for an account that deducts fees, silently.
fn entity_charges(totals: Option<&RawValue>) -> Result<Vec<Fee>, String> {
    #[derive(Deserialize)]
    struct Totals<'a> {
        #[serde(borrow)]
        entity_charges: Option<&'a RawValue>,
    }
    let Some(totals) = totals.filter(|t| t.get() != "null") else {
        return Ok(Vec::new());
    };
    let t: Totals = serde_json::from_str(totals.get()).map_err(|_| {
        format!(
            "unreadable operation: totals {} is not an object",
            totals.get()
        )
    })?;
    let Some(charges) = t.entity_charges.filter(|c| c.get() != "null") else {
        return Ok(Vec::new());
    };
    let Charges(items) = serde_json::from_str(charges.get()).map_err(|_| {
        format!(
            "unreadable operation: totals.entity_charges {} is not an object",
            charges.get()
        )
    })?;
    items
        .into_iter()
        .filter(|(_, raw)| raw.get() != "null")
        .map(|(kind, raw)| match parse_amount(raw) {
            Ok(amount) => Ok(Fee { kind, amount }),
            Err(_) => Err(format!(
                "unreadable operation: totals.entity_charges.{kind} {} is not an amount",
                raw.get()
            )),
        })
        .collect()
}

/// An object's members in order, each value as its JSON text.
struct Charges<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Charges<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Charges<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of charges")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some(key) = m.next_key::<String>()? {
                    out.push((key, m.next_value::<&'de RawValue>()?));
                }
                Ok(Charges(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}
