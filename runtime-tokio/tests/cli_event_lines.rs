//! `tether server` prints one line per event, whatever the peer put in its metadata
//! (issue 9): line breaks between JSON tokens, bidirectional and other control characters
//! inside strings neither split the line nor reach the terminal raw.
#![cfg(unix)]

mod common;

use common::GUARD;

use std::process::Stdio;

use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

async fn next(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(GUARD, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("server output ended")
}

#[tokio::test]
async fn a_received_line_is_one_line_with_its_metadata_escaped() {
    let mut server = common::tether(&["server", "--listen", "127.0.0.1:0"], Stdio::inherit());
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let listening = next(&mut lines).await;
    let url = listening
        .strip_prefix("listening ")
        .expect(&listening)
        .to_owned();

    let metadata = "{\"user\":\r\n\"ada\u{202e}\u{85}x\",\r\n\"n\":\t1}";
    let (client, mut events) = Client::connect(&url, ClientConfig::new(metadata)).unwrap();
    let id = loop {
        match tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
            Some(ClientEvent::Connected { id, .. }) => break id,
            Some(_) => {}
            None => panic!("client ended"),
        }
    };
    let line = next(&mut lines).await;
    let (head, rest) = line.split_once(" from=").expect(&line);
    assert!(rest.starts_with("127.0.0.1:"), "{line}");
    let json = head
        .strip_prefix(&format!("received {id} "))
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(json, "{\"user\":  \"ada\\u202e\\u0085x\",  \"n\": 1}");
    // Still the metadata's value.
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let sent: serde_json::Value = serde_json::from_str(metadata).unwrap();
    assert_eq!(value, sent);
    client.close().await;
}
