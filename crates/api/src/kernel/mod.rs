//! The kernel: PD's etcd, which holds the log backup task under `/tidb/br-stream/`.
//!
//! Spoken through etcd's built-in v3 JSON gateway (`/v3/kv/*`), so the build needs no
//! `protoc`. Keys are always read exactly, never by prefix (`lb1` must not match `lb10`).

pub mod keys;

use k8s_openapi::jiff::Timestamp;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;

/// A TSO-like timestamp (physical ms << 18) for `commitTs` when none is given.
pub fn tso_now() -> u64 {
    let ms = u64::try_from(Timestamp::now().as_millisecond()).unwrap_or(0);
    ms << 18
}

/// Errors talking to the kernel etcd.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("kernel etcd at {endpoint}: {source}")]
    Http {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("kernel etcd at {endpoint} answered {status}: {body}")]
    Status {
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("kernel etcd at {endpoint} sent an unreadable answer: {detail}")]
    Decode { endpoint: String, detail: String },
}

/// A client for one kernel etcd endpoint (`http://host:port`).
#[derive(Debug, Clone)]
pub struct KernelClient {
    endpoint: String,
    http: reqwest::Client,
}

impl KernelClient {
    /// `endpoint` is `host:port` or `http://host:port`.
    pub fn new(endpoint: &str) -> Self {
        let endpoint = if endpoint.contains("://") {
            endpoint.trim_end_matches('/').to_owned()
        } else {
            format!("http://{endpoint}")
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self { endpoint, http }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn call(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, KernelError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.endpoint))
            .json(&body)
            .send()
            .await
            .map_err(|source| KernelError::Http {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|source| KernelError::Http {
            endpoint: self.endpoint.clone(),
            source,
        })?;
        if status != 200 {
            return Err(KernelError::Status {
                endpoint: self.endpoint.clone(),
                status,
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| KernelError::Decode {
            endpoint: self.endpoint.clone(),
            detail: e.to_string(),
        })
    }

    /// `GET /health` answers `{"health":"true"}`.
    pub async fn healthy(&self) -> bool {
        match self
            .http
            .get(format!("{}/health", self.endpoint))
            .send()
            .await
        {
            Ok(r) => r
                .text()
                .await
                .map(|t| t.contains("\"health\":\"true\""))
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// The value at exactly `key`.
    ///
    /// # Errors
    /// Transport or decoding errors.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KernelError> {
        let v = self
            .call("/v3/kv/range", json!({"key": B64.encode(key)}))
            .await?;
        let Some(kv) = v.get("kvs").and_then(|k| k.get(0)) else {
            return Ok(None);
        };
        let value = kv.get("value").and_then(|v| v.as_str()).unwrap_or("");
        B64.decode(value)
            .map(Some)
            .map_err(|e| KernelError::Decode {
                endpoint: self.endpoint.clone(),
                detail: format!("value of {key}: {e}"),
            })
    }

    /// Set `key` to `value`.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), KernelError> {
        self.call(
            "/v3/kv/put",
            json!({"key": B64.encode(key), "value": B64.encode(value)}),
        )
        .await
        .map(|_| ())
    }

    /// Delete exactly `key`; returns whether it existed.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn delete(&self, key: &str) -> Result<bool, KernelError> {
        let v = self
            .call("/v3/kv/deleterange", json!({"key": B64.encode(key)}))
            .await?;
        Ok(v.get("deleted")
            .and_then(|d| {
                d.as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .or(d.as_u64())
            })
            .unwrap_or(0)
            > 0)
    }

    /// Every key under `prefix` with its value (for debug bundles and tests).
    ///
    /// # Errors
    /// Transport or decoding errors.
    pub async fn list_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KernelError> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let v = self
            .call(
                "/v3/kv/range",
                json!({"key": B64.encode(prefix), "range_end": B64.encode(&end)}),
            )
            .await?;
        let decode = |s: &str| {
            B64.decode(s).map_err(|e| KernelError::Decode {
                endpoint: self.endpoint.clone(),
                detail: e.to_string(),
            })
        };
        let mut out = Vec::new();
        for kv in v
            .get("kvs")
            .and_then(|k| k.as_array())
            .into_iter()
            .flatten()
        {
            let key = decode(kv.get("key").and_then(|k| k.as_str()).unwrap_or(""))?;
            let value = decode(kv.get("value").and_then(|k| k.as_str()).unwrap_or(""))?;
            out.push((String::from_utf8_lossy(&key).into_owned(), value));
        }
        Ok(out)
    }

    /// The raw keys of `task`, each read exactly.
    ///
    /// # Errors
    /// Transport or decoding errors.
    pub async fn read_task(&self, task: &str) -> Result<keys::RawTask, KernelError> {
        let k = keys::task_keys(task);
        let (info, checkpoint, pause, last_error) = futures::try_join!(
            self.get(&k.info),
            self.get(&k.checkpoint),
            self.get(&k.pause),
            self.get(&k.last_error)
        )?;
        Ok(keys::RawTask {
            info,
            checkpoint,
            pause,
            last_error,
        })
    }
}
