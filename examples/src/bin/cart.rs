//! A shopping cart's story: `cargo run -p examples --bin cart`.

use es_core::prelude::*;
use examples::cart::{AddItem, Cart, CheckOut, PriceList, RemoveItem};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prices = PriceList::new([("apple", 50), ("coffee", 1_250), ("tv", 40_000)]);
    let app = Dispatcher::builder(InMemoryStore::new())
        .services::<Cart>(prices)
        .build();
    let cart = "cart-7".to_owned();
    let add = |sku: &str, quantity| AddItem {
        cart: cart.clone(),
        sku: sku.into(),
        quantity,
    };

    for command in [add("apple", 6), add("coffee", 2), add("tv", 1)] {
        println!("> add {} x {}", command.quantity, command.sku);
        let committed = app.dispatch(command).await?;
        for e in committed.events() {
            println!("  event #{} {:?}", e.version, e.payload);
        }
    }

    println!("> add 1 x caviar");
    match app.dispatch(add("caviar", 1)).await {
        Err(e) => println!("  rejected: {e}"),
        Ok(_) => unreachable!("caviar is not for sale"),
    }

    println!("> remove tv");
    let removed = app
        .dispatch(RemoveItem {
            cart: cart.clone(),
            sku: "tv".into(),
        })
        .await?;
    println!("  {} event(s)", removed.events().len());
    println!("> remove tv again (nothing to remove: no event)");
    let again = app
        .dispatch(RemoveItem {
            cart: cart.clone(),
            sku: "tv".into(),
        })
        .await?;
    println!(
        "  {} event(s), still at version {}",
        again.events().len(),
        again.version
    );

    println!("> check out");
    let paid = app.dispatch(CheckOut { cart: cart.clone() }).await?;
    for e in paid.events() {
        println!("  event #{} {:?}", e.version, e.payload);
    }

    let state: Cart = app.load(&cart).await?;
    println!(
        "state: {} article(s), subtotal {} cents, checked out: {}",
        state.items.len(),
        state.subtotal(),
        state.checked_out
    );
    Ok(())
}
