//! Generated code must compile whatever the user's module shadows, without
//! a single warning: every derive, every supported shape, generics included.
#![deny(warnings)]
#![no_implicit_prelude]

// Named explicitly: `no_implicit_prelude` hides the extern prelude.
#[allow(unused_extern_crates)]
extern crate es_core;
#[allow(unused_extern_crates)]
extern crate serde;
extern crate std as the_std;
#[allow(unused_extern_crates)]
extern crate thiserror;

use es_core::testing::AggregateTest;
use es_core::{Aggregate, Command, Event, handlers};
use serde::{Deserialize, Serialize};
use the_std::clone::Clone;
use the_std::cmp::PartialEq;
use the_std::convert::From;
use the_std::fmt::Debug;
use the_std::marker::{Send, Sync};

// Names generated code must never resolve by accident.
/// Part of the hygiene fixture.
pub type Result<T> = T;
/// Part of the hygiene fixture.
pub struct Ok;
/// Part of the hygiene fixture.
pub struct Err;
/// Part of the hygiene fixture.
pub struct Option;
/// Part of the hygiene fixture.
pub struct Some;
/// Part of the hygiene fixture.
pub struct None;
/// Part of the hygiene fixture.
pub struct Box;
/// Part of the hygiene fixture.
pub struct Vec;
/// Part of the hygiene fixture.
pub struct String;
/// Part of the hygiene fixture.
pub struct Default;
/// Part of the hygiene fixture.
pub struct Self_;
/// Part of the hygiene fixture.
pub mod core {}
/// Part of the hygiene fixture.
pub mod std {}
/// Part of the hygiene fixture.
pub mod serde_private {}

/// Part of the hygiene fixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "hygiene.named", version = 3, aliases = ["hygiene.old_name"], older = [NamedV1, NamedV2])]
pub struct Named {
    /// Part of the hygiene fixture.
    pub text: the_std::string::String,
}

/// Part of the hygiene fixture: an older version, through `From`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "hygiene.old_name", version = 1, next = NamedV2)]
pub struct NamedV1 {
    /// Part of the hygiene fixture.
    pub words: the_std::string::String,
}

/// Part of the hygiene fixture: an older version, upcast by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "hygiene.named", version = 2, next = Named, custom_upcast)]
pub struct NamedV2 {
    /// Part of the hygiene fixture.
    pub words: the_std::string::String,
}

impl From<NamedV1> for NamedV2 {
    fn from(v1: NamedV1) -> Self {
        NamedV2 { words: v1.words }
    }
}

impl es_core::Upcast for NamedV2 {
    type Next = Named;

    fn upcast(self, out: &mut the_std::vec::Vec<Named>) {
        out.push(Named { text: self.words });
    }
}

/// Part of the hygiene fixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Tuple(pub u64, pub i8);

/// Part of the hygiene fixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Unit;

/// Part of the hygiene fixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[serde(bound = "")]
pub struct Generic<T: Tag> {
    /// Part of the hygiene fixture.
    pub tag: the_std::marker::PhantomData<T>,
    /// Part of the hygiene fixture.
    pub n: u32,
}

/// Part of the hygiene fixture.
pub trait Tag: Debug + Clone + PartialEq + the_std::default::Default + Send + Sync + 'static {}

/// Part of the hygiene fixture.
#[derive(Debug, Clone, PartialEq, the_std::default::Default, Serialize, Deserialize)]
pub struct Blue;
impl Tag for Blue {}

/// Part of the hygiene fixture.
#[derive(Debug, Clone, PartialEq, Event)]
pub enum Events<T: Tag> {
    /// Part of the hygiene fixture.
    Named(Named),
    /// Part of the hygiene fixture.
    Tuple(Tuple),
    /// Part of the hygiene fixture.
    Unit(Unit),
    /// Part of the hygiene fixture.
    Generic(Generic<T>),
}

/// Part of the hygiene fixture.
#[derive(Debug, Clone, Command)]
#[command(aggregate = Thing<T>)]
pub struct Make<T: Tag> {
    /// Part of the hygiene fixture.
    #[aggregate_id]
    pub id: u64,
    /// Part of the hygiene fixture.
    pub tag: the_std::marker::PhantomData<T>,
}

/// Part of the hygiene fixture.
#[derive(Debug, Clone, Command)]
#[command(aggregate = Thing<Blue>)]
pub struct Touch(#[aggregate_id] pub u64);

/// Part of the hygiene fixture.
#[derive(Debug, Clone, Command)]
pub enum Any {
    /// Part of the hygiene fixture.
    Make(Make<Blue>),
    /// Part of the hygiene fixture.
    Touch(Touch),
}

/// Part of the hygiene fixture.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("refused")]
pub struct Refused;

/// Part of the hygiene fixture.
pub struct Services {
    /// Part of the hygiene fixture.
    pub base: u32,
}

/// Part of the hygiene fixture.
#[derive(Debug, Clone, the_std::default::Default, Serialize, Deserialize, Aggregate)]
#[serde(bound = "")]
#[aggregate(name = "thing", id = u64, event = Events<T>, error = Refused, services = Services, snapshot_every = 50)]
pub struct Thing<T: Tag> {
    /// Part of the hygiene fixture.
    pub made: bool,
    /// Part of the hygiene fixture.
    pub touches: u64,
    /// Part of the hygiene fixture.
    pub last: u32,
    /// Part of the hygiene fixture.
    pub tag: the_std::marker::PhantomData<T>,
}

#[handlers]
impl<T: Tag> Thing<T> {
    #[handle]
    fn make(&self, _: Make<T>, services: &Services) -> Result<the_std::result::Result<(Named, Generic<T>), Refused>> {
        if self.made {
            return the_std::result::Result::Err(Refused);
        }
        the_std::result::Result::Ok((
            Named {
                text: the_std::string::String::from("made"),
            },
            Generic {
                tag: the_std::marker::PhantomData,
                n: services.base,
            },
        ))
    }

    #[apply]
    fn named(&mut self, _: &Named) {
        self.made = true;
    }

    #[apply]
    fn tuple(&mut self, e: &Tuple) {
        self.touches += e.0;
    }

    #[apply]
    fn unit(&mut self, _: &Unit) {}

    #[apply]
    fn generic(&mut self, e: &Generic<T>) {
        self.last = e.n;
    }
}

#[handlers]
impl Thing<Blue> {
    #[handle]
    fn touch(&self, _: Touch) -> the_std::result::Result<the_std::option::Option<Tuple>, Refused> {
        the_std::result::Result::Ok(the_std::option::Option::Some(Tuple(1, -1)))
    }
}

#[test]
fn generated_code_works_under_shadowing() {
    the_std::assert_eq!(
        <Events<Blue> as Event>::NAMES,
        &["hygiene.named", "Tuple", "Unit", "Generic"]
    );
    the_std::assert_eq!(<Thing<Blue> as Aggregate>::NAME, "thing");
    the_std::assert_eq!(Touch(3).aggregate_id(), &3);
    let _ = Any::from(Touch(1));
    let state = AggregateTest::<Thing<Blue>>::given(Unit)
        .services(Services { base: 7 })
        .when(Make {
            id: 1,
            tag: the_std::marker::PhantomData,
        })
        .then_expect((
            Named {
                text: the_std::string::String::from("made"),
            },
            Generic {
                tag: the_std::marker::PhantomData,
                n: 7,
            },
        ));
    the_std::assert!(state.made);
    the_std::assert_eq!(state.last, 7);
    AggregateTest::<Thing<Blue>>::given(Named {
        text: the_std::string::String::new(),
    })
    .services(Services { base: 0 })
    .when(Touch(1))
    .then_expect(Tuple(1, -1));
}
