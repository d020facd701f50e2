//! [`Checkpoints`] on PostgreSQL: one row per name.

use syncbus_core::NameKind;
use syncbus_storage::check_name;
use syncbus_storage::{Checkpoints, StoreFuture};

use super::error::pg_error;
use super::PgStore;

const GET: &str = "SELECT value FROM checkpoints WHERE name = $1";
const PUT: &str = "
    INSERT INTO checkpoints (name, value) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()";
const REMOVE: &str = "DELETE FROM checkpoints WHERE name = $1";

impl Checkpoints for PgStore {
    fn get<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            check_name(NameKind::Checkpoint, name)?;
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(GET).await?;
            let row = conn
                .client
                .query_opt(&stmt, &[&name])
                .await
                .map_err(|e| pg_error("read a checkpoint", e))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn put<'a>(&'a self, name: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            check_name(NameKind::Checkpoint, name)?;
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(PUT).await?;
            conn.client
                .execute(&stmt, &[&name, &value])
                .await
                .map_err(|e| pg_error("write a checkpoint", e))?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            check_name(NameKind::Checkpoint, name)?;
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(REMOVE).await?;
            let n = conn
                .client
                .execute(&stmt, &[&name])
                .await
                .map_err(|e| pg_error("remove a checkpoint", e))?;
            Ok(n > 0)
        })
    }
}
