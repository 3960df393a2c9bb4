//! An `envoy.service.ext_proc.v3.ExternalProcessor` that lets everything through unchanged.

use std::pin::Pin;

use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessor;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Msg;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Answer;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyResponse, HeadersResponse, ProcessingRequest, ProcessingResponse, TrailersResponse,
};
use futures::{future, Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Answers every message with CONTINUE (an empty common response).
pub struct Continue;

/// The CONTINUE answer to `msg` (the same kind as the message).
fn answer(msg: &ProcessingRequest) -> Option<ProcessingResponse> {
    let headers = HeadersResponse::default;
    let response = match msg.request.as_ref()? {
        Msg::RequestHeaders(_) => Answer::RequestHeaders(headers()),
        Msg::ResponseHeaders(_) => Answer::ResponseHeaders(headers()),
        Msg::RequestBody(_) => Answer::RequestBody(BodyResponse::default()),
        Msg::ResponseBody(_) => Answer::ResponseBody(BodyResponse::default()),
        Msg::RequestTrailers(_) => Answer::RequestTrailers(TrailersResponse::default()),
        Msg::ResponseTrailers(_) => Answer::ResponseTrailers(TrailersResponse::default()),
    };
    Some(ProcessingResponse {
        response: Some(response),
        ..Default::default()
    })
}

#[tonic::async_trait]
impl ExternalProcessor for Continue {
    type ProcessStream = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let answers = request
            .into_inner()
            .filter_map(|msg| future::ready(msg.ok().as_ref().and_then(answer).map(Ok)));
        Ok(Response::new(Box::pin(answers)))
    }
}
