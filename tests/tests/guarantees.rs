//! Each guarantee of the README under attack, on every store.

tests::on_every_store! {
    command_ids_are_scoped_to_their_stream => |store| tests::guarantees::command_ids_are_scoped_to_their_stream(store),
    a_command_id_reused_by_another_command_is_refused =>
        |store| tests::guarantees::a_command_id_reused_by_another_command_is_refused(store),
    a_command_id_reused_with_other_content_is_refused =>
        |store| tests::guarantees::a_command_id_reused_with_other_content_is_refused(store),
    an_event_that_cannot_be_applied_is_never_stored =>
        |store| tests::guarantees::an_event_that_cannot_be_applied_is_never_stored(store),
    a_panicking_handler_commits_nothing => |store| tests::guarantees::a_panicking_handler_commits_nothing(store),
}
