//! What each guarantee of es-postgres's batched append costs the server:
//! the batch statement (8 appends of one event each, as a committer sends
//! them for 8 writers) timed whole and with one guarantee taken out at a
//! time, on one connection, each variant into a table of its own, in
//! interleaved rounds. `cargo run --release -p benches --bin append_costs`
//! (`SYNC=off` to leave out the commit's disk flush: the statement's own
//! cost). The variants mirror `es-postgres/src/schema.rs`'s
//! `append_batch`, reduced to what differs between them.

use std::time::Instant;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

/// Appends per statement.
const REQUESTS: usize = 8;
/// Statements per variant and round; the first round warms up.
const PER_ROUND: usize = 250;
const ROUNDS: usize = 6;

/// Each variant: what it is, its statement (`{t}` its table, `{n}` the
/// round, binds `$1..$7`: aggregate types, ids, assumed versions, event
/// ids, names, payloads, command ids or NULL), whether it sends command
/// ids.
fn variants(s: &str) -> Vec<(&'static str, String, bool)> {
    let cur = |lock: bool, head: bool| {
        let tx = if lock {
            "pg_current_xact_id() AS tx, pg_advisory_xact_lock_shared(1, 2) AS locked"
        } else {
            "'1'::xid8 AS tx"
        };
        let (v, lateral) = if head {
            (
                "COALESCE(h.version, 0)",
                format!(
                    r#"LEFT JOIN LATERAL (SELECT e.version, e.link FROM "{s}".{{t}} e
                       WHERE e.aggregate_type = r.t AND e.aggregate_id = r.i ORDER BY e.version DESC LIMIT 1) h ON TRUE"#
                ),
            )
        } else {
            ("r.assumed", String::new())
        };
        format!(
            r#"cur AS MATERIALIZED (SELECT r.*, {tx}, {v} AS v
               FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $7::TEXT[]) WITH ORDINALITY AS r(t, i, assumed, cmd, req)
               {lateral}), ok AS (SELECT * FROM cur WHERE v = assumed)"#
        )
    };
    let insert = |returning: bool| {
        format!(
            r#"ins AS (INSERT INTO "{s}".{{t}} (transaction_id, event_id, aggregate_type, aggregate_id, version, name,
                                              schema_version, payload, metadata, recorded_at)
               SELECT ok.tx, e.event_id, ok.t, ok.i, ok.v + 1, e.name, 1, e.payload, '', now()
               FROM UNNEST($4::UUID[], $5::TEXT[], $6::BYTEA[]) WITH ORDINALITY AS e(event_id, name, payload, req)
               JOIN ok ON ok.req = e.req {})"#,
            if returning {
                "RETURNING position, aggregate_type, aggregate_id, version"
            } else {
                ""
            }
        )
    };
    let commands = format!(
        r#", cmd AS (INSERT INTO "{s}".commands (command_id, aggregate_type, aggregate_id, first_version, last_version)
           SELECT cmd || '-{{n}}', t, i, v + 1, v + 1 FROM ok WHERE cmd IS NOT NULL)"#
    );
    let positions = "SELECT cur.v, ARRAY(SELECT i.position FROM ins i WHERE i.aggregate_type = cur.t \
                     AND i.aggregate_id = cur.i ORDER BY i.version) FROM cur ORDER BY cur.req";
    let no_positions = "SELECT cur.v, NULL::BIGINT[] FROM cur ORDER BY cur.req";
    let plain = |table: &str| {
        format!(
            r#"INSERT INTO "{s}".{table} (transaction_id, event_id, aggregate_type, aggregate_id, version, name,
                                       schema_version, payload, metadata, recorded_at)
               SELECT '1'::xid8, r.event_id, r.t, r.i, r.assumed + 1, r.name, 1, r.payload, '', now()
               FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::UUID[], $5::TEXT[], $6::BYTEA[])
                    AS r(t, i, assumed, event_id, name, payload)
               WHERE $7::TEXT[] IS NULL OR TRUE"#
        )
    };
    vec![
        (
            "as es-postgres: commit-order lock and transaction id, head check, positions, command ids",
            format!("WITH {}, {}{commands} {positions}", cur(true, true), insert(true)),
            true,
        ),
        (
            "… without command ids",
            format!("WITH {}, {} {positions}", cur(true, true), insert(true)),
            false,
        ),
        (
            "… and without positions",
            format!("WITH {}, {} {no_positions}", cur(true, true), insert(false)),
            false,
        ),
        (
            "… and without the commit-order lock and transaction id",
            format!("WITH {}, {} {no_positions}", cur(false, true), insert(false)),
            false,
        ),
        (
            "… and without the head check (a plain insert in the same statement shape)",
            format!("WITH {}, {} {no_positions}", cur(false, false), insert(false)),
            false,
        ),
        ("a plain multi-row insert into the same table", plain("{t}"), false),
        ("… into a table without the event-id index", plain("{t}_no_id"), false),
    ]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("ES_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let Ok(mut conn) = PgConnection::connect(&url).await else {
        eprintln!("*** nothing answers at {url} (ES_POSTGRES_URL)");
        std::process::exit(1);
    };
    let s = format!("es_bench_costs_{}", std::process::id());
    let sync = if std::env::var("SYNC").as_deref() == Ok("off") {
        "off"
    } else {
        "on"
    };
    let setup = |n: usize| {
        let columns = "position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, transaction_id XID8 NOT NULL, \
                       event_id UUID NOT NULL, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, \
                       version BIGINT NOT NULL, name TEXT NOT NULL, schema_version INTEGER NOT NULL, \
                       payload BYTEA NOT NULL, metadata BYTEA NOT NULL, recorded_at TIMESTAMPTZ NOT NULL, link BYTEA";
        format!(
            r#"CREATE TABLE "{s}".t{n} ({columns}, UNIQUE (event_id), UNIQUE (aggregate_type, aggregate_id, version));
               CREATE TABLE "{s}".t{n}_no_id ({columns}, UNIQUE (aggregate_type, aggregate_id, version));"#
        )
    };
    let variants = variants(&s);
    let mut ddl = format!(
        r#"SET synchronous_commit = {sync}; SET plan_cache_mode = force_generic_plan; CREATE SCHEMA "{s}";
           CREATE TABLE "{s}".commands (command_id TEXT NOT NULL, aggregate_type TEXT NOT NULL,
             aggregate_id TEXT NOT NULL, first_version BIGINT NOT NULL, last_version BIGINT NOT NULL,
             PRIMARY KEY (aggregate_type, aggregate_id, command_id));"#
    );
    for n in 0..variants.len() {
        ddl.push_str(&setup(n));
    }
    conn.execute(AssertSqlSafe(ddl)).await.expect("set up");
    let mut seconds = vec![0.0; variants.len()];
    let mut versions = vec![0_i64; variants.len()];
    for round in 0..ROUNDS {
        for (n, (_, sql, commands)) in variants.iter().enumerate() {
            let sql = sql.replace("{t}", &format!("t{n}")).replace("{n}", &round.to_string());
            let started = Instant::now();
            for _ in 0..PER_ROUND {
                let v = versions[n];
                let event_ids: Vec<sqlx::types::Uuid> =
                    (0..REQUESTS).map(|_| *es_core::EventId::new().as_uuid()).collect();
                let command_ids: Option<Vec<String>> =
                    commands.then(|| (0..REQUESTS).map(|r| format!("c{r}-{v}")).collect());
                let rows = sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(vec!["bank_account"; REQUESTS])
                    .bind((0..REQUESTS).map(|r| format!("acc-{r}")).collect::<Vec<_>>())
                    .bind(vec![v; REQUESTS])
                    .bind(event_ids)
                    .bind(vec!["account.deposited"; REQUESTS])
                    .bind(vec![br#"{"amount":1}"#.to_vec(); REQUESTS])
                    .bind(command_ids)
                    .fetch_all(&mut conn)
                    .await
                    .expect("append");
                if let Some(row) = rows.first() {
                    assert_eq!(row.get::<i64, _>(0), v, "each append found its head");
                }
                versions[n] += 1;
            }
            if round > 0 {
                seconds[n] += started.elapsed().as_secs_f64();
            }
        }
    }
    conn.execute(AssertSqlSafe(format!(r#"DROP SCHEMA "{s}" CASCADE"#)))
        .await
        .expect("clean up");
    let statements = ((ROUNDS - 1) * PER_ROUND) as f64;
    println!("synchronous_commit = {sync}, {REQUESTS} appends of one event per statement");
    println!("| statement | per statement | per append | against the first |");
    println!("|---|---|---|---|");
    let first = seconds[0] / statements;
    for ((what, _, _), total) in variants.iter().zip(&seconds) {
        let each = total / statements;
        println!(
            "| {what} | {:.0} µs | {:.0} µs | {:.2} |",
            each * 1e6,
            each * 1e6 / REQUESTS as f64,
            first / each
        );
    }
}
