//! A hotel's guests: personal data that can be forgotten. A guest registers
//! with a name and an e-mail address (personal, sealed under the guest's own
//! key) and books rooms (not personal). Forgetting the guest erases the key:
//! the name and address are gone from every event, the bookings stay, and
//! the guest can still book.

use std::collections::BTreeMap;

use es_core::SubjectForgotten;
use es_core::personal::Personal;
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

/// A guest registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "guest.registered")]
pub struct GuestRegistered {
    /// The guest: whose data the personal fields are.
    pub guest_id: String,
    /// Their name.
    #[personal(subject = guest_id)]
    pub name: Personal<String>,
    /// Their e-mail address.
    #[personal(subject = guest_id)]
    pub email: Personal<String>,
}

/// A room was booked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "guest.room_booked")]
pub struct RoomBooked {
    /// The room.
    pub room: u32,
    /// For how many nights.
    pub nights: u32,
}

/// Everything that can happen to a guest.
#[derive(Debug, Clone, PartialEq, Eq, Event)]
pub enum GuestEvent {
    /// See [`GuestRegistered`].
    Registered(GuestRegistered),
    /// See [`RoomBooked`].
    Booked(RoomBooked),
}

/// Register a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = Guest)]
pub struct RegisterGuest {
    /// The guest.
    #[aggregate_id]
    pub guest_id: String,
    /// Their name.
    pub name: String,
    /// Their e-mail address.
    pub email: String,
}

/// Book a room for a registered guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = Guest)]
pub struct BookRoom {
    /// The guest.
    #[aggregate_id]
    pub guest_id: String,
    /// The room.
    pub room: u32,
    /// For how many nights (at least one).
    pub nights: u32,
}

/// Why a guest refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// Registering twice.
    #[error("the guest is registered already")]
    Registered,
    /// Booking before registering.
    #[error("the guest is not registered")]
    NotRegistered,
    /// Booking no nights.
    #[error("a booking is for one night or more")]
    NoNights,
}

/// A guest's state. The name and address are kept as personal values: a
/// snapshot seals them, and once the guest is forgotten they are gone here
/// too.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "guest", id = String, event = GuestEvent, error = GuestError, snapshot_every = 3)]
pub struct Guest {
    /// Registered.
    pub registered: bool,
    /// The name, while known.
    pub name: Option<Personal<String>>,
    /// The address, while known.
    pub email: Option<Personal<String>>,
    /// Whether the guest can be sent a confirmation (an address is known):
    /// worked out from personal data, so a snapshot that holds it is not
    /// used once the guest is forgotten.
    pub contactable: bool,
    /// Nights booked in all.
    pub nights: u32,
}

#[es_core::handlers]
impl Guest {
    #[handle]
    fn register(&self, cmd: RegisterGuest) -> Result<GuestRegistered, GuestError> {
        if self.registered {
            return Err(GuestError::Registered);
        }
        Ok(GuestRegistered {
            guest_id: cmd.guest_id,
            name: Personal::new(cmd.name),
            email: Personal::new(cmd.email),
        })
    }

    #[handle]
    fn book(&self, cmd: BookRoom) -> Result<RoomBooked, GuestError> {
        if !self.registered {
            return Err(GuestError::NotRegistered);
        }
        if cmd.nights == 0 {
            return Err(GuestError::NoNights);
        }
        Ok(RoomBooked {
            room: cmd.room,
            nights: cmd.nights,
        })
    }

    #[apply]
    fn registered(&mut self, e: &GuestRegistered) {
        self.registered = true;
        self.name = Some(e.name.clone());
        self.email = Some(e.email.clone());
        self.contactable = e.email.get().is_some();
    }

    #[apply]
    fn booked(&mut self, e: &RoomBooked) {
        self.nights += e.nights;
    }
}

/// A row of the guest list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GuestRow {
    /// The name, or `None` when forgotten.
    pub name: Option<String>,
    /// The address, or `None` when forgotten.
    pub email: Option<String>,
    /// Nights booked.
    pub nights: u32,
}

/// The guest list, by guest id: it copies names and addresses out of the
/// events, so it scrubs them when a guest is forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestList {
    /// The rows.
    pub rows: BTreeMap<String, GuestRow>,
}

#[es_core::handlers(read_model)]
impl GuestList {
    #[apply]
    fn registered(&mut self, e: &GuestRegistered) {
        let row = self.rows.entry(e.guest_id.clone()).or_default();
        row.name = e.name.get().cloned();
        row.email = e.email.get().cloned();
    }

    #[apply]
    fn booked(&mut self, e: &RoomBooked, context: &EventContext<'_>) {
        self.rows.entry(context.aggregate_id.to_owned()).or_default().nights += e.nights;
    }

    #[apply]
    fn forgotten(&mut self, e: &SubjectForgotten) {
        if let Some(row) = self.rows.get_mut(&e.subject) {
            row.name = None;
            row.email = None;
        }
    }
}
