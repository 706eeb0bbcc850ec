"""The shop's C2PA signer as a resource: Content Credentials on every proof and print file."""

import dagster as dg

from photogen_pipelines.imaging.content_credentials import ContentCredentials
from photogen_pipelines.settings import PhotoGenSettings


class ContentCredentialsResource(dg.ConfigurableResource):
    """The shop's C2PA signer (imaging/content_credentials.py): its name, and the paths of its
    PEM certificate chain and key (PHOTOGEN_C2PA_CERT / PHOTOGEN_C2PA_KEY). Only paths are
    config, so the UI never shows a key. Without them: the development chain in `home`."""

    shop_name: str = "PhotoGen"
    certificate_path: str | None = None
    private_key_path: str | None = None
    tsa_url: str | None = None
    trust_anchors_path: str | None = None
    home: str | None = None

    @classmethod
    def from_settings(cls, settings: PhotoGenSettings) -> "ContentCredentialsResource":
        return cls(
            shop_name=settings.shop_name,
            certificate_path=settings.c2pa_cert,
            private_key_path=settings.c2pa_key,
            tsa_url=settings.c2pa_tsa_url,
            trust_anchors_path=settings.c2pa_trust_anchors,
            home=str(settings.paths.home),
        )

    def credentials(self) -> ContentCredentials:
        """Built once per process for the same settings (the core caches it)."""
        return ContentCredentials.from_settings(
            PhotoGenSettings(
                home=self.home,
                shop_name=self.shop_name,
                c2pa_cert=self.certificate_path,
                c2pa_key=self.private_key_path,
                c2pa_tsa_url=self.tsa_url,
                c2pa_trust_anchors=self.trust_anchors_path,
            )
        )
