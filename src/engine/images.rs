//! Moving images between engines: export (`docker save`), load (`docker load`), the layers
//! an engine holds, and pushes to a registry.

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    ImportImageOptionsBuilder, ListImagesOptionsBuilder, PushImageOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};

use super::{Engine, EngineError};

/// How many image inspections are in flight at once when listing an engine's layers.
const INSPECTIONS_IN_FLIGHT: usize = 8;

impl Engine {
    /// The image as `docker save` writes it, streamed as the engine produces it.
    pub(crate) fn export_image(
        &self,
        image: &str,
    ) -> impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static {
        let operation = format!("export image {image}");
        self.long_docker
            .export_image(image)
            .map_err(move |e| EngineError::from_bollard(operation.clone(), e))
    }

    /// Loads a `docker save` archive read from `archive`, as it comes; the engine tags the
    /// image only once all of it has arrived.
    pub(crate) async fn load_image(
        &self,
        archive: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Result<(), EngineError> {
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut answers = self.long_docker.import_image_stream(options, archive, None);
        while let Some(answer) = answers.next().await {
            let answer = answer.map_err(|e| EngineError::from_bollard("load the image", e))?;
            // Engine 20.10 answers a refused archive with status 200 and the error in the body.
            if let Some(message) = answer.error_detail.and_then(|detail| detail.message) {
                return Err(EngineError::from_bollard(
                    "load the image",
                    bollard::errors::Error::DockerStreamError { error: message },
                ));
            }
        }
        Ok(())
    }

    /// Pushes `repository:tag` to its registry with `credentials` (sent as `docker push`
    /// sends the docker CLI's): the status of each of the engine's messages, as they come.
    /// A failure of the registry's is a `Refused` with a `Registry…` refusal.
    pub(crate) fn push_image(
        &self,
        repository: &str,
        tag: &str,
        credentials: Option<DockerCredentials>,
    ) -> impl Stream<Item = Result<String, EngineError>> + 'static {
        let operation = format!("push {repository}:{tag}");
        let options = PushImageOptionsBuilder::default().tag(tag).build();
        self.long_docker
            .push_image(repository, Some(options), credentials)
            .map_err(move |e| EngineError::from_push(operation.clone(), e))
            .try_filter_map(|message| std::future::ready(Ok(message.status)))
    }

    /// Removes the name `reference` from its image (the image stays under its other names).
    pub(crate) async fn untag_image(&self, reference: &str) -> Result<(), EngineError> {
        let options = RemoveImageOptionsBuilder::default().noprune(true).build();
        self.docker
            .remove_image(reference, Some(options), None)
            .await
            .map(drop)
            .map_err(|e| EngineError::from_bollard(format!("remove the name {reference}"), e))
    }

    /// A reference to an image of the engine's with exactly these layers: a name when it has
    /// one (the containerd store takes no other engine's image id in a `FROM`), else its id.
    pub(crate) async fn image_with_layers(
        &self,
        layers: &[String],
    ) -> Result<Option<String>, EngineError> {
        Ok(self
            .images_and_layers()
            .await?
            .into_iter()
            .find(|(_, its)| its == layers)
            .map(|(reference, _)| reference))
    }

    /// The layers (diff ids, bottom first) of each of the engine's tagged and dangling images.
    pub(crate) async fn image_layers(&self) -> Result<Vec<Vec<String>>, EngineError> {
        Ok(self
            .images_and_layers()
            .await?
            .into_iter()
            .map(|(_, layers)| layers)
            .collect())
    }

    /// Each of the engine's tagged and dangling images: its first name (its id when it has
    /// none) and its layers.
    async fn images_and_layers(&self) -> Result<Vec<(String, Vec<String>)>, EngineError> {
        let images = self
            .docker
            .list_images(Some(ListImagesOptionsBuilder::default().build()))
            .await
            .map_err(|e| EngineError::from_bollard("list images", e))?;
        futures_util::stream::iter(images)
            .map(|image| async move {
                // An image removed since the listing has no layers to offer.
                let layers = self
                    .inspect_image(&image.id)
                    .await?
                    .and_then(|inspected| inspected.root_fs)
                    .and_then(|root_fs| root_fs.layers)
                    .unwrap_or_default();
                Ok((
                    image.repo_tags.into_iter().next().unwrap_or(image.id),
                    layers,
                ))
            })
            .buffer_unordered(INSPECTIONS_IN_FLIGHT)
            .try_collect()
            .await
    }
}
