//! A shopping cart: add and remove items at catalogue prices, clear, check
//! out. It shows handlers returning `Option`, `Vec` and tuples of events, and
//! services (the price list) injected into handlers.

use std::collections::{BTreeMap, HashMap};

use es_core::prelude::*;
use serde::{Deserialize, Serialize};

/// The catalogue prices handlers read: the cart's services.
#[derive(Debug, Clone, Default)]
pub struct PriceList {
    prices: HashMap<String, u64>,
}

impl PriceList {
    /// A price list from `(sku, cents)` pairs.
    pub fn new<'a>(prices: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        PriceList {
            prices: prices.into_iter().map(|(s, p)| (s.to_owned(), p)).collect(),
        }
    }

    /// The price of `sku`, if it is sold.
    pub fn price(&self, sku: &str) -> Option<u64> {
        self.prices.get(sku).copied()
    }
}

/// Items were added at a unit price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "cart.item_added")]
pub struct ItemAdded {
    /// The article.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// The unit price in cents, fixed when added.
    pub unit_price: u64,
}

/// An article was taken out of the cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "cart.item_removed")]
pub struct ItemRemoved {
    /// The article.
    pub sku: String,
}

/// The cart was paid for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "cart.checked_out")]
pub struct CheckedOut {
    /// The total in cents.
    pub total: u64,
}

/// A discount earned at checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "cart.discount_granted")]
pub struct DiscountGranted {
    /// In cents.
    pub amount: u64,
}

/// Everything that can happen to a cart.
#[derive(Debug, Clone, PartialEq, Eq, Event)]
pub enum CartEvent {
    /// See [`ItemAdded`].
    Added(ItemAdded),
    /// See [`ItemRemoved`].
    Removed(ItemRemoved),
    /// See [`DiscountGranted`].
    Discount(DiscountGranted),
    /// See [`CheckedOut`].
    CheckedOut(CheckedOut),
}

/// Add items at the catalogue price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = Cart)]
pub struct AddItem {
    /// The cart.
    #[aggregate_id]
    pub cart: String,
    /// The article.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

/// Remove an article (nothing happens if it is not in the cart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = Cart)]
pub struct RemoveItem {
    /// The cart.
    #[aggregate_id]
    pub cart: String,
    /// The article.
    pub sku: String,
}

/// Remove every article.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = Cart)]
pub struct ClearCart {
    /// The cart.
    #[aggregate_id]
    pub cart: String,
}

/// Pay. Orders of 100.00 or more get 5% off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = Cart)]
pub struct CheckOut {
    /// The cart.
    #[aggregate_id]
    pub cart: String,
}

/// Why a cart refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    /// The cart was paid for already.
    #[error("the cart is checked out")]
    CheckedOut,
    /// Checking out nothing.
    #[error("the cart is empty")]
    Empty,
    /// Adding an article the shop does not sell.
    #[error("`{0}` is not for sale")]
    UnknownSku(String),
    /// Adding zero items.
    #[error("the quantity must be more than zero")]
    ZeroQuantity,
}

/// A cart's state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Aggregate)]
#[aggregate(name = "cart", id = String, event = CartEvent, error = CartError, services = PriceList)]
pub struct Cart {
    /// Quantity and unit price per article.
    pub items: BTreeMap<String, (u32, u64)>,
    /// Paid for.
    pub checked_out: bool,
}

impl Cart {
    /// The sum of the items, in cents.
    pub fn subtotal(&self) -> u64 {
        self.items.values().map(|(q, p)| u64::from(*q) * p).sum()
    }

    fn open(&self) -> Result<(), CartError> {
        if self.checked_out {
            Err(CartError::CheckedOut)
        } else {
            Ok(())
        }
    }
}

#[es_core::handlers]
impl Cart {
    #[handle]
    fn add(&self, cmd: AddItem, prices: &PriceList) -> Result<ItemAdded, CartError> {
        self.open()?;
        if cmd.quantity == 0 {
            return Err(CartError::ZeroQuantity);
        }
        let unit_price = prices
            .price(&cmd.sku)
            .ok_or_else(|| CartError::UnknownSku(cmd.sku.clone()))?;
        Ok(ItemAdded {
            sku: cmd.sku,
            quantity: cmd.quantity,
            unit_price,
        })
    }

    /// Removing what is not there is not an error: nothing happens.
    #[handle]
    fn remove(&self, cmd: RemoveItem) -> Result<Option<ItemRemoved>, CartError> {
        self.open()?;
        Ok(self
            .items
            .contains_key(&cmd.sku)
            .then_some(ItemRemoved { sku: cmd.sku }))
    }

    #[handle]
    fn clear(&self, _: ClearCart) -> Result<Vec<ItemRemoved>, CartError> {
        self.open()?;
        Ok(self.items.keys().map(|sku| ItemRemoved { sku: sku.clone() }).collect())
    }

    #[handle]
    fn check_out(&self, _: CheckOut) -> Result<(Option<DiscountGranted>, CheckedOut), CartError> {
        self.open()?;
        if self.items.is_empty() {
            return Err(CartError::Empty);
        }
        let subtotal = self.subtotal();
        let discount = (subtotal >= 10_000).then_some(DiscountGranted { amount: subtotal / 20 });
        let total = subtotal - discount.as_ref().map_or(0, |d| d.amount);
        Ok((discount, CheckedOut { total }))
    }

    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        let entry = self.items.entry(e.sku.clone()).or_insert((0, e.unit_price));
        entry.0 += e.quantity;
        entry.1 = e.unit_price;
    }

    #[apply]
    fn removed(&mut self, e: &ItemRemoved) {
        self.items.remove(&e.sku);
    }

    #[apply]
    fn discounted(&mut self, _: &DiscountGranted) {}

    #[apply]
    fn paid(&mut self, _: &CheckedOut) {
        self.checked_out = true;
    }
}

#[cfg(test)]
mod tests {
    use es_core::testing::AggregateTest;

    use super::*;

    fn prices() -> PriceList {
        PriceList::new([("apple", 50), ("tv", 40_000)])
    }

    fn added(sku: &str, quantity: u32, unit_price: u64) -> ItemAdded {
        ItemAdded {
            sku: sku.into(),
            quantity,
            unit_price,
        }
    }

    #[test]
    fn adding_uses_the_catalogue_price() {
        AggregateTest::<Cart>::given_nothing()
            .services(prices())
            .when(AddItem {
                cart: "c".into(),
                sku: "apple".into(),
                quantity: 3,
            })
            .then_expect(added("apple", 3, 50));
    }

    #[test]
    fn unknown_articles_are_refused() {
        AggregateTest::<Cart>::given_nothing()
            .services(prices())
            .when(AddItem {
                cart: "c".into(),
                sku: "pear".into(),
                quantity: 1,
            })
            .then_error(CartError::UnknownSku("pear".into()));
    }

    #[test]
    fn removing_what_is_not_there_does_nothing() {
        AggregateTest::<Cart>::given(added("apple", 1, 50))
            .services(prices())
            .when(RemoveItem {
                cart: "c".into(),
                sku: "tv".into(),
            })
            .then_expect(());
    }

    #[test]
    fn clearing_removes_each_article() {
        let state = AggregateTest::<Cart>::given((added("apple", 1, 50), added("tv", 1, 40_000)))
            .services(prices())
            .when(ClearCart { cart: "c".into() })
            .then_expect(vec![
                ItemRemoved { sku: "apple".into() },
                ItemRemoved { sku: "tv".into() },
            ]);
        assert!(state.items.is_empty());
    }

    #[test]
    fn big_orders_get_a_discount() {
        AggregateTest::<Cart>::given(added("tv", 1, 40_000))
            .services(prices())
            .when(CheckOut { cart: "c".into() })
            .then_expect((DiscountGranted { amount: 2_000 }, CheckedOut { total: 38_000 }));
        AggregateTest::<Cart>::given(added("apple", 2, 50))
            .services(prices())
            .when(CheckOut { cart: "c".into() })
            .then_expect(CheckedOut { total: 100 });
    }
}
