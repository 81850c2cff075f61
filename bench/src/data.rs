//! The benchmark's documents: order-like nested JSON of about 1 KB (a customer with an address,
//! one to five items with their own tags, totals, payment, shipping, free text), the same ones
//! for the same seed on every machine.

use chrono::{DateTime, SecondsFormat};
use serde_json::{Value, json};
use uuid::Uuid;

/// The document type every benchmark document carries.
pub const DOC_TYPE: &str = "order";

/// 2025-01-01T00:00:00Z: the data set's timestamps fall in the year after it.
const YEAR_START_MS: i64 = 1_735_689_600_000;
const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

/// SplitMix64: a small, fast generator whose sequence depends only on its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// One of `items` (not empty).
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A random (version 4) uuid.
    pub fn uuid(&mut self) -> Uuid {
        let bytes = (u128::from(self.next_u64()) << 64 | u128::from(self.next_u64())).to_be_bytes();
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// One document as both stores hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// The id (Cassandra's `id`, Elasticsearch's `_id`).
    pub id: Uuid,
    /// The Elasticsearch index (Cassandra's `index_`).
    pub index: String,
    /// Milliseconds since the epoch (Cassandra's `timestamp`, `_essync.timestamp`).
    pub timestamp: i64,
    /// The content: a JSON object's text (Cassandra's `content`).
    pub content: String,
}

impl Doc {
    /// The `_source` essync keeps in Elasticsearch: the content with its metadata under
    /// `_essync`.
    pub fn es_source(&self) -> String {
        let body = self.content.trim_end();
        let body = body.strip_suffix('}').unwrap_or(body);
        let separator = if body.trim_end().ends_with('{') {
            ""
        } else {
            ","
        };
        format!(
            "{body}{separator}\"_essync\":{{\"type\":\"{DOC_TYPE}\",\"timestamp\":\"{}\"}}}}",
            rfc3339(self.timestamp)
        )
    }

    /// The same document changed as an application would change it: a new status, one more
    /// revision, written at `now_ms`.
    pub fn changed(&self, rng: &mut Rng, now_ms: i64) -> Doc {
        let mut content: Value = serde_json::from_str(&self.content).unwrap_or_else(|_| json!({}));
        if let Some(object) = content.as_object_mut() {
            let revision = object.get("revision").and_then(Value::as_u64).unwrap_or(0);
            object.insert("revision".into(), json!(revision + 1));
            object.insert("status".into(), json!(rng.pick(STATUSES)));
            object.insert("updated_at".into(), json!(rfc3339(now_ms)));
        }
        Doc {
            id: self.id,
            index: self.index.clone(),
            timestamp: now_ms,
            content: content.to_string(),
        }
    }
}

/// `count` documents of `index` from `seed`, with timestamps in 2025.
pub fn documents(seed: u64, index: &str, count: usize) -> Vec<Doc> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let id = rng.uuid();
            let timestamp = YEAR_START_MS + rng.below(YEAR_MS) as i64;
            Doc {
                id,
                index: index.to_string(),
                timestamp,
                content: order(&mut rng, timestamp).to_string(),
            }
        })
        .collect()
}

/// One document of `index` written now (for the lag writers): a new id from `rng`.
pub fn new_document(rng: &mut Rng, index: &str, now_ms: i64) -> Doc {
    Doc {
        id: rng.uuid(),
        index: index.to_string(),
        timestamp: now_ms,
        content: order(rng, now_ms).to_string(),
    }
}

/// RFC 3339 in UTC with milliseconds, as essync writes `_essync.timestamp`.
pub fn rfc3339(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

const STATUSES: &[&str] = &[
    "pending",
    "paid",
    "packed",
    "shipped",
    "delivered",
    "returned",
];
const FIRST: &[&str] = &[
    "Ada", "Bruno", "Chloé", "Dmitri", "Elif", "Farah", "Gustav", "Hana", "Ines", "Jonas", "Keiko",
    "Luca", "Maya", "Nils", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tariq",
];
const LAST: &[&str] = &[
    "Almeida", "Berger", "Castillo", "Dubois", "Eriksen", "Fischer", "García", "Horvat", "Ivanova",
    "Jensen", "Kowalski", "Lefèvre", "Moreau", "Nakamura", "Okafor", "Petrov",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Lyon", "69", "FR"),
    ("Porto", "40", "PT"),
    ("Leipzig", "04", "DE"),
    ("Gdańsk", "80", "PL"),
    ("Turku", "20", "FI"),
    ("Valencia", "46", "ES"),
    ("Graz", "80", "AT"),
    ("Utrecht", "35", "NL"),
];
const STREETS: &[&str] = &[
    "Rue de la République",
    "Avenida da Boavista",
    "Karl-Liebknecht-Straße",
    "ulica Długa",
    "Aurakatu",
    "Carrer de Colón",
    "Herrengasse",
    "Oudegracht",
];
const ADJECTIVES: &[&str] = &[
    "oak", "steel", "linen", "ceramic", "walnut", "copper", "wool", "glass", "bamboo", "leather",
];
const NOUNS: &[&str] = &[
    "lamp", "chair", "table", "mug", "shelf", "blanket", "vase", "desk", "stool", "basket",
];
const TAGS: &[&str] = &[
    "home",
    "office",
    "gift",
    "sale",
    "new",
    "eco",
    "handmade",
    "bestseller",
    "outdoor",
    "kids",
];
const CARRIERS: &[&str] = &["DHL", "UPS", "GLS", "DPD", "PostNL", "La Poste"];
const PAYMENTS: &[&str] = &["card", "paypal", "transfer", "invoice"];
const WORDS: &[&str] = &[
    "please",
    "leave",
    "the",
    "parcel",
    "with",
    "neighbour",
    "at",
    "number",
    "ring",
    "twice",
    "fragile",
    "handle",
    "care",
    "call",
    "before",
    "delivery",
    "back",
    "door",
    "office",
    "hours",
];

fn money(cents: u64) -> f64 {
    cents as f64 / 100.0
}

/// An order-like document.
fn order(rng: &mut Rng, timestamp: i64) -> Value {
    let (city, postcode, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
    let first = rng.pick(FIRST);
    let last = rng.pick(LAST);
    let items: Vec<Value> = (0..1 + rng.below(5))
        .map(|_| {
            let tags: Vec<&str> = (0..1 + rng.below(3)).map(|_| rng.pick(TAGS)).collect();
            json!({
                "sku": format!("SKU-{:06}", rng.below(1_000_000)),
                "name": format!("{} {}", rng.pick(ADJECTIVES), rng.pick(NOUNS)),
                "quantity": 1 + rng.below(4),
                "unit_price": money(199 + rng.below(20_000)),
                "tags": tags,
            })
        })
        .collect();
    let subtotal: f64 = items
        .iter()
        .map(|i| i["unit_price"].as_f64().unwrap_or(0.0) * i["quantity"].as_f64().unwrap_or(0.0))
        .sum();
    let shipping = money(rng.below(1500));
    let tax = (subtotal * 0.2 * 100.0).round() / 100.0;
    let note: Vec<&str> = (0..rng.below(40)).map(|_| rng.pick(WORDS)).collect();
    json!({
        "order_number": format!("ORD-{}", 100_000_000 + rng.below(900_000_000)),
        "status": rng.pick(STATUSES),
        "revision": 1,
        "created_at": rfc3339(timestamp),
        "customer": {
            "id": 1 + rng.below(5_000_000),
            "name": format!("{first} {last}"),
            "email": format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase()),
            "loyalty": {"tier": rng.pick(&["none", "silver", "gold"]), "points": rng.below(20_000)},
            "address": {
                "street": format!("{} {}", 1 + rng.below(200), rng.pick(STREETS)),
                "postcode": format!("{postcode}{:03}", rng.below(1000)),
                "city": city,
                "country": country,
            },
        },
        "items": items,
        "totals": {
            "subtotal": (subtotal * 100.0).round() / 100.0,
            "shipping": shipping,
            "tax": tax,
            "grand_total": ((subtotal + shipping + tax) * 100.0).round() / 100.0,
            "currency": "EUR",
        },
        "payment": {
            "method": rng.pick(PAYMENTS),
            "captured": rng.below(10) > 0,
            "reference": format!("{:016x}", rng.next_u64()),
        },
        "shipping": {
            "carrier": rng.pick(CARRIERS),
            "tracking": format!("{:012}", rng.below(1_000_000_000_000)),
            "eta_days": 1 + rng.below(7),
        },
        "note": note.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_documents_and_another_seed_others() {
        assert_eq!(documents(7, "i", 50), documents(7, "i", 50));
        let other = documents(8, "i", 50);
        assert!(
            documents(7, "i", 50)
                .iter()
                .all(|d| !other.iter().any(|o| o.id == d.id))
        );
    }

    #[test]
    fn documents_average_about_a_kilobyte_of_nested_json() {
        let docs = documents(1, "bench", 2000);
        let average = docs.iter().map(|d| d.content.len()).sum::<usize>() / docs.len();
        assert!((800..=1300).contains(&average), "average {average} bytes");
        let first: Value = serde_json::from_str(&docs[0].content).unwrap();
        assert!(first["customer"]["address"]["city"].is_string());
        assert!(
            first["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty())
        );
    }

    #[test]
    fn the_elasticsearch_source_is_the_content_and_the_metadata() {
        let doc = &documents(3, "bench", 1)[0];
        let source: Value = serde_json::from_str(&doc.es_source()).unwrap();
        let content: Value = serde_json::from_str(&doc.content).unwrap();
        assert_eq!(source["_essync"]["type"], DOC_TYPE);
        assert_eq!(source["_essync"]["timestamp"], rfc3339(doc.timestamp));
        let mut without = source.clone();
        without.as_object_mut().unwrap().remove("_essync");
        assert_eq!(without, content);
    }

    #[test]
    fn a_change_keeps_the_id_and_moves_the_revision_and_timestamp() {
        let doc = &documents(4, "bench", 1)[0];
        let changed = doc.changed(&mut Rng::new(9), doc.timestamp + 1000);
        assert_eq!(changed.id, doc.id);
        assert_eq!(changed.timestamp, doc.timestamp + 1000);
        let content: Value = serde_json::from_str(&changed.content).unwrap();
        assert_eq!(content["revision"], 2);
    }
}
