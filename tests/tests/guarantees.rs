//! Each guarantee of the README under attack, on every store.

macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    tests::guarantees::$case(es_core::InMemoryStore::new()).await;
                }
            )*
        }

        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    tests::guarantees::$case(tests::sqlite::temp_store().await).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(store) = tests::postgres::store().await {
                        tests::guarantees::$case(store).await;
                    }
                }
            )*
        }
    };
}

on_every_store!(
    command_ids_are_scoped_to_their_stream,
    a_command_id_reused_by_another_command_is_refused,
    a_command_id_reused_with_other_content_is_refused,
    an_event_that_cannot_be_applied_is_never_stored,
    a_panicking_handler_commits_nothing,
);
