//! MQTT over WebSocket for the embedded broker (`ws` and `wss` listeners), as paho and
//! meshcoretomqtt speak it: any path, subprotocol `mqtt` echoed when asked for, MQTT bytes in
//! binary messages. The WebSocket is bridged to an in-memory byte pipe, so the connection code
//! sees the same byte stream as on TCP.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Completes the WebSocket handshake on `stream` and returns the MQTT byte stream inside it.
/// Messages larger than `max_message` end the connection.
// The handshake callback's error type is tungstenite's HTTP response, large by its design.
#[allow(clippy::result_large_err)]
pub async fn accept<S>(stream: S, max_message: usize) -> Result<DuplexStream, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let echo_mqtt = |req: &Request, mut resp: Response| {
        let asks_mqtt = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
        if asks_mqtt {
            resp.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, echo_mqtt, Some(config))
        .await
        .map_err(|e| e.to_string())?;
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(pump(ws, theirs));
    Ok(ours)
}

/// Moves bytes between the WebSocket and the pipe until either side ends.
async fn pump<S>(ws: tokio_tungstenite::WebSocketStream<S>, pipe: DuplexStream)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(pipe);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                // Pongs are queued by tungstenite itself; flushing sends them.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    if sink.flush().await.is_err() {
                        break;
                    }
                }
                // MQTT over WebSocket is binary only (MQTT 3.1.1 §6).
                Some(Ok(Message::Text(_) | Message::Close(_))) | Some(Err(_)) | None => break,
            },
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default().to_vec();
                    if sink.send(Message::Binary(chunk.into())).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = sink.close().await;
}
