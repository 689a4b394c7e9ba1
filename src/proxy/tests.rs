use super::*;

#[test]
fn latency_spreads_over_twice_the_base_and_is_reproducible() {
    let l = Latency {
        base: Duration::from_millis(10),
    };
    let all: Vec<Duration> = (0..1000).map(|s| l.for_request(s)).collect();
    assert!(all.iter().all(|d| *d <= Duration::from_millis(20)));
    let mean = all.iter().sum::<Duration>() / 1000;
    assert!((8..=12).contains(&mean.as_millis()), "{mean:?}");
    assert_eq!(l.for_request(7), l.for_request(7));
    assert_eq!(Latency::default().for_request(3), Duration::ZERO);
}

#[test]
fn hop_headers_and_the_controllers_credentials_are_not_forwarded() {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer lbc-proxy"),
    );
    h.insert("host", HeaderValue::from_static("127.0.0.1:1"));
    h.insert("accept", HeaderValue::from_static("application/json"));
    h.insert("content-length", HeaderValue::from_static("3"));
    let out = forwardable(&h);
    assert_eq!(out.len(), 1);
    assert!(out.contains_key("accept"));
}
