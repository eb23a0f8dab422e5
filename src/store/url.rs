//! Dataset URL or path → object store and root prefix. Cloud stores take
//! their credentials from the usual environment variables; the URL shown to
//! users never carries secrets.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::error::{Error, Result};
use crate::redact::redact;
use crate::store::retry::{RetryPolicy, RetryStore};

/// An opened location: the store, the root prefix inside it, and a display URL.
#[derive(Debug, Clone)]
pub struct Location {
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// The dataset root inside the store.
    pub root: Path,
    /// The URL as shown to users (no credentials).
    pub url: String,
}

/// Every store opened by URL retries failed requests (see [`RetryStore`]).
fn retrying(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(RetryStore::new(store, RetryPolicy::default()))
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

/// Opens `url`: a plain path, `file://`, `memory://NAME` (one in-process
/// store per NAME, shared by every open), `s3://`, `gs://` or `az://`.
/// With `create`, a missing local folder is created.
pub fn open_location(url: &str, create: bool) -> Result<Location> {
    open_location_with(url, create, &BTreeMap::new())
}

/// [`open_location`] with object-store settings that override the
/// environment's: object_store's configuration keys (`aws_endpoint`,
/// `aws_region`, `aws_access_key_id`, `aws_allow_http`,
/// `google_service_account`, `azure_storage_account_name`, … or their short
/// forms such as `endpoint` and `region`). An unknown key is an error naming
/// it; local and `memory://` locations take no settings and ignore them.
pub fn open_location_with(
    url: &str,
    create: bool,
    options: &BTreeMap<String, String>,
) -> Result<Location> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: redact(url),
        reason,
    };
    if let Some(name) = url.strip_prefix("memory://") {
        let (bucket, prefix) = name.split_once('/').unwrap_or((name, ""));
        let mut stores = memory_stores().lock().unwrap_or_else(|e| e.into_inner());
        let store: Arc<dyn ObjectStore> = stores.entry(bucket.to_owned()).or_default().clone();
        return Ok(Location {
            store: retrying(store),
            root: Path::from(prefix),
            url: redact(url),
        });
    }
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        None | Some("file") => {
            let local = match scheme {
                Some(_) => url::Url::parse(url)
                    .ok()
                    .and_then(|u| u.to_file_path().ok())
                    .ok_or_else(|| invalid("not a valid file:// URL".into()))?,
                None => std::path::PathBuf::from(url),
            };
            if create {
                std::fs::create_dir_all(&local)
                    .map_err(|e| Error::io(local.display().to_string(), e))?;
            }
            let abs = std::path::absolute(&local).map_err(|e| Error::io(redact(url), e))?;
            if !abs.is_dir() {
                return Err(Error::NotADataset {
                    url: abs.display().to_string(),
                });
            }
            let store = LocalFileSystem::new_with_prefix(&abs)
                .map_err(|e| invalid(e.to_string()))?
                .with_automatic_cleanup(false);
            Ok(Location {
                store: retrying(Arc::new(store)),
                root: Path::default(),
                url: abs.display().to_string(),
            })
        }
        Some(s) => cloud(url, s, options).map_err(|e| match e {
            Error::InvalidUrl { .. } => e,
            other => invalid(other.to_string()),
        }),
    }
}

#[cfg(feature = "cloud")]
fn cloud(url: &str, scheme: &str, options: &BTreeMap<String, String>) -> Result<Location> {
    use std::str::FromStr;
    let invalid = |reason: String| Error::InvalidUrl {
        url: redact(url),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    let unknown = |k: &str| {
        invalid(format!(
            "unknown storage option {:?} for {scheme}://",
            crate::redact::printable(k)
        ))
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url);
            for (k, v) in options {
                let key =
                    object_store::aws::AmazonS3ConfigKey::from_str(k).map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
        }
        "gs" => {
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
            for (k, v) in options {
                let key =
                    object_store::gcp::GoogleConfigKey::from_str(k).map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
        }
        "az" | "abfs" | "abfss" => {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url);
            for (k, v) in options {
                let key =
                    object_store::azure::AzureConfigKey::from_str(k).map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| invalid(e.to_string()))?)
        }
        other => return Err(invalid(format!("unsupported scheme {other:?}"))),
    };
    let root = Path::from(parsed.path().trim_start_matches('/'));
    // No userinfo, query or fragment: only where the data is.
    let shown = redact(&format!(
        "{scheme}://{}{}",
        parsed.host_str().unwrap_or_default(),
        parsed.path()
    ));
    Ok(Location {
        store: retrying(store),
        root,
        url: shown.trim_end_matches('/').to_owned(),
    })
}

#[cfg(not(feature = "cloud"))]
fn cloud(url: &str, scheme: &str, _options: &BTreeMap<String, String>) -> Result<Location> {
    Err(Error::InvalidUrl {
        url: redact(url),
        reason: format!("{scheme}:// needs the `cloud` feature of must-ds"),
    })
}
