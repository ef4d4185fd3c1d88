"""FHIR R4 adapters: HL7 Da Vinci PAS request intake and response, DTR questionnaires, CRD coverage information.

The engine does not know FHIR: these modules translate between FHIR resources (plain JSON dicts) and the
Case / Determination of the core. Mapping: docs/fhir-mapping.md.
"""
