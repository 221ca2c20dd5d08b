//! An axum service that inserts a row and enqueues a job in one Postgres transaction, with
//! a worker in the same binary. The job writes its effect and completes in one transaction,
//! so each welcome is sent exactly once.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --example axum_enqueue
//! curl -s -XPOST localhost:3000/signup -H 'content-type: application/json' -d '{"email":"ada@example.com"}'
//! curl -s localhost:3000/users
//! ```

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use errand::{Client, Job, JobContext, JobError, Outcome, PgStore, Worker};
use serde::{Deserialize, Serialize};

#[derive(Clone)]
struct App {
    store: PgStore,
    jobs: Client<PgStore>,
}

/// Welcomes a new user: records the welcome and completes in one transaction.
#[derive(Serialize, Deserialize)]
struct SendWelcome {
    user_id: i64,
}

impl Job for SendWelcome {
    const KIND: &'static str = "send_welcome";
    type State = PgStore;

    async fn run(self, cx: JobContext<PgStore>) -> Result<Outcome, JobError> {
        let store = cx.state();
        // …send the mail here…
        let mut tx = store.pool().begin().await?;
        sqlx::query("UPDATE example_users SET welcomed_at = now() WHERE id = $1")
            .bind(self.user_id)
            .execute(&mut *tx)
            .await?;
        cx.complete_in(store, &mut tx).await?;
        tx.commit().await?;
        Ok(Outcome::Complete)
    }
}

#[derive(Deserialize)]
struct Signup {
    email: String,
}

async fn signup(
    State(app): State<App>,
    Json(body): Json<Signup>,
) -> Result<(StatusCode, Json<serde_json::Value>), (StatusCode, String)> {
    let fail = |e: &dyn std::fmt::Display| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut tx = app.store.pool().begin().await.map_err(|e| fail(&e))?;
    let user_id: i64 =
        sqlx::query_scalar("INSERT INTO example_users (email) VALUES ($1) RETURNING id")
            .bind(&body.email)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| (StatusCode::CONFLICT, e.to_string()))?;
    // Same transaction: if the signup rolls back, no welcome is ever sent.
    let job = app
        .jobs
        .enqueue_tx(&mut tx, SendWelcome { user_id })
        .await
        .map_err(|e| fail(&e))?;
    tx.commit().await.map_err(|e| fail(&e))?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "user_id": user_id, "job_id": job.id })),
    ))
}

async fn users(
    State(app): State<App>,
) -> Result<Json<Vec<serde_json::Value>>, (StatusCode, String)> {
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, email, welcomed_at::text FROM example_users ORDER BY id DESC LIMIT 100",
    )
    .fetch_all(app.store.pool())
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(
        rows.into_iter()
            .map(|(id, email, welcomed_at)| serde_json::json!({ "id": id, "email": email, "welcomed_at": welcomed_at }))
            .collect(),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let store = PgStore::connect(&url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS example_users (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, welcomed_at timestamptz)",
    )
    .execute(store.pool())
    .await?;

    let worker = Worker::builder(store.clone(), store.clone())
        .register::<SendWelcome>()
        .queue("default", 10)
        .build()?
        .start();

    let app = App {
        jobs: Client::new(store.clone()),
        store,
    };
    let router = Router::new()
        .route("/signup", post(signup))
        .route("/users", get(users))
        .with_state(app);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr} (POST /signup, GET /users); Ctrl-C to stop");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            errand::shutdown_signal().await;
        })
        .await?;
    let report = worker.shutdown().await;
    println!(
        "worker stopped ({} jobs returned to the queue)",
        report.released
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
