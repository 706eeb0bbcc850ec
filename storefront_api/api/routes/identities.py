"""Saved identities: a person's photos kept for later jobs, deleted on request."""

from fastapi import APIRouter, Query, Response, status

from photogen_pipelines.credits.customers import check_ref
from photogen_pipelines.orders import identities
from storefront_api.api.deps import ServicesDep, StorefrontDep
from storefront_api.schemas import IdentityIn, IdentityList, IdentityOut

router = APIRouter(prefix="/identities", tags=["identities"])

NOT_FOUND = {404: {"description": "identity_not_found: no identity of this API key has this id"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=IdentityOut,
    responses={
        422: {
            "description": "consent_required (consent true was not sent), upload_not_found (not this key's upload), "
            "photos_not_same_person (details name the photo), invalid_customer_ref, invalid_request"
        },
    },
)
def create_identity(body: IdentityIn, caller: StorefrontDep, services: ServicesDep) -> IdentityOut:
    """Keep 1-4 photos of one person for later jobs: a shop's model, a customer's avatar.
    The photos are checked to show one person and copied (the uploads expire; the identity
    stays until it is deleted), with the identity the jobs compare their shots with."""
    if body.customer_ref is not None:
        check_ref(body.customer_ref)
    identity = identities.save_identity(
        services.database,
        services.store,
        services.faces,
        caller.api_key_id,
        body.upload_ids,
        consent=body.consent,
        label=body.label,
        customer_ref=body.customer_ref,
    )
    return IdentityOut.model_validate(identity, from_attributes=True)


@router.get("", response_model=IdentityList, responses={422: {"description": "invalid_customer_ref"}})
def list_identities(
    caller: StorefrontDep,
    services: ServicesDep,
    customer_ref: str | None = Query(None, max_length=64, description="only this customer's"),
) -> IdentityList:
    """The key's identities, newest first."""
    if customer_ref is not None:
        check_ref(customer_ref)
    found = identities.identities_of(services.database, caller.api_key_id, customer_ref)
    return IdentityList(identities=[IdentityOut.model_validate(i, from_attributes=True) for i in found])


@router.get("/{identity_id}", response_model=IdentityOut, responses=NOT_FOUND)
def get_identity(identity_id: str, caller: StorefrontDep, services: ServicesDep) -> IdentityOut:
    return IdentityOut.model_validate(
        identities.get_identity(services.database, identity_id, caller.api_key_id), from_attributes=True
    )


@router.delete("/{identity_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_identity(identity_id: str, caller: StorefrontDep, services: ServicesDep) -> Response:
    """Remove the identity's photos, its embedding and its record, everywhere."""
    identities.delete_identity(services.database, services.store, identity_id, caller.api_key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
