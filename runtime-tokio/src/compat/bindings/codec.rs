//! How WebSocket messages map to the channel item types.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// A data message, text or binary (control frames never reach the handler).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindingData {
    /// A text message (valid UTF-8, checked by tungstenite).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// Maps messages to and from the channel item types. A decode error closes the connection with
/// the returned frame.
pub trait Codec: Send + 'static {
    /// Item of the receive channel.
    type In: Send + 'static;
    /// Item of the send channel.
    type Out: Send + 'static;
    /// A received message as an item, or the frame to close with.
    fn decode(data: BindingData) -> Result<Self::In, CloseFrame>;
    /// An item as the message to send, or the frame to close with.
    fn encode(item: Self::Out) -> Result<Message, CloseFrame>;
}

fn frame(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// Text and binary messages as they are ([`BindingData`]): text echoed as text, binary as binary.
#[derive(Debug)]
pub enum Raw {}

impl Codec for Raw {
    type In = BindingData;
    type Out = BindingData;
    fn decode(data: BindingData) -> Result<BindingData, CloseFrame> {
        Ok(data)
    }
    fn encode(item: BindingData) -> Result<Message, CloseFrame> {
        Ok(match item {
            BindingData::Text(t) => Message::Text(t),
            BindingData::Binary(b) => Message::Binary(b),
        })
    }
}

/// Text messages as `String` (macaron's `Messages`). A binary message closes with 1003.
#[derive(Debug)]
pub enum Text {}

impl Codec for Text {
    type In = String;
    type Out = String;
    fn decode(data: BindingData) -> Result<String, CloseFrame> {
        match data {
            BindingData::Text(t) => Ok(t.as_str().to_owned()),
            BindingData::Binary(_) => Err(frame(
                CloseCode::Unsupported,
                "binary messages not accepted",
            )),
        }
    }
    fn encode(item: String) -> Result<Message, CloseFrame> {
        Ok(Message::text(item))
    }
}

/// Message payloads as [`Bytes`] (macaron's `ByteSliceMessages`); text messages arrive as their
/// UTF-8 bytes, items are sent as binary messages.
#[derive(Debug)]
pub enum Binary {}

impl Codec for Binary {
    type In = Bytes;
    type Out = Bytes;
    fn decode(data: BindingData) -> Result<Bytes, CloseFrame> {
        Ok(match data {
            BindingData::Text(t) => Bytes::from(t),
            BindingData::Binary(b) => b,
        })
    }
    fn encode(item: Bytes) -> Result<Message, CloseFrame> {
        Ok(Message::Binary(item))
    }
}

/// JSON values of type `T`, from text or binary messages, sent as text (macaron's `JSON`).
/// A message that is not a valid `T` closes with 1007 (payload inconsistent with its type).
#[derive(Debug)]
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Codec for Json<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    type In = T;
    type Out = T;
    fn decode(data: BindingData) -> Result<T, CloseFrame> {
        let bytes: &[u8] = match &data {
            BindingData::Text(t) => t.as_bytes(),
            BindingData::Binary(b) => b,
        };
        serde_json::from_slice(bytes).map_err(|_| frame(CloseCode::Invalid, "invalid JSON message"))
    }
    fn encode(item: T) -> Result<Message, CloseFrame> {
        serde_json::to_string(&item)
            .map(Message::text)
            .map_err(|_| frame(CloseCode::Error, "could not serialize a message"))
    }
}
