"""Code systems, profiles and extension URLs used by the FHIR adapters (docs/fhir-mapping.md)."""

from __future__ import annotations

# ---- standard code systems ------------------------------------------------------------------------------------
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
CPT = "http://www.ama-assn.org/go/cpt"
NUCC = "http://nucc.org/provider-taxonomy"
NPI = "http://hl7.org/fhir/sid/us-npi"
UCUM = "http://unitsofmeasure.org"
SOPT = "urn:oid:2.16.840.1.113883.3.221.5"
#: code systems under the other URIs senders write for them (OIDs, https spellings, the URL US Core binds for
#: the Source of Payment Typology) -> the URI priorauth reads them by
SYSTEM_ALIASES = {
    **dict.fromkeys(("urn:oid:2.16.840.1.113883.6.90", "https://hl7.org/fhir/sid/icd-10-cm"), ICD10CM),
    **dict.fromkeys(("urn:oid:2.16.840.1.113883.6.1", "https://loinc.org", "http://loinc.org/"), LOINC),
    **dict.fromkeys(("urn:oid:2.16.840.1.113883.6.101", "https://nucc.org/provider-taxonomy"), NUCC),
    **dict.fromkeys(("urn:oid:2.16.840.1.113883.4.6", "https://hl7.org/fhir/sid/us-npi"), NPI),
    **dict.fromkeys(("urn:oid:2.16.840.1.113883.6.8", "https://unitsofmeasure.org"), UCUM),
    **dict.fromkeys(("urn:oid:2.16.840.1.113883.6.96", "https://snomed.info/sct"), SNOMED),
    **dict.fromkeys(("urn:oid:2.16.840.1.113883.6.88", "https://www.nlm.nih.gov/research/umls/rxnorm"), RXNORM),
    **dict.fromkeys(("urn:oid:2.16.840.1.113883.6.12", "https://www.ama-assn.org/go/cpt"), CPT),
    **dict.fromkeys(("https://nahdo.org/sopt", "http://nahdo.org/sopt", "https://www.nahdo.org/sopt",
                     "http://www.nahdo.org/sopt", "2.16.840.1.113883.3.221.5"), SOPT),
}
PROCESS_PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
X12_CERTIFICATION_TYPE = "https://codesystem.x12.org/005010/1322"
X12_REVIEW_ACTION = "https://codesystem.x12.org/005010/306"
ISSUE_TYPE = "http://hl7.org/fhir/issue-type"

# ---- Da Vinci PAS ---------------------------------------------------------------------------------------------
PAS = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition"
PAS_REQUEST_BUNDLE = f"{PAS}/profile-pas-request-bundle"
PAS_INQUIRY_BUNDLE = f"{PAS}/profile-pas-inquiry-request-bundle"
PAS_CLAIM_INQUIRY = f"{PAS}/profile-claim-inquiry"
PAS_RESPONSE_BUNDLE = f"{PAS}/profile-pas-response-bundle"
PAS_CLAIM = f"{PAS}/profile-claim"
PAS_CLAIM_RESPONSE = f"{PAS}/profile-claimresponse"
EXT_REQUESTED_SERVICE = f"{PAS}/extension-requestedService"
EXT_CERTIFICATION_TYPE = f"{PAS}/extension-certificationType"
EXT_REVIEW_ACTION = f"{PAS}/extension-reviewAction"
EXT_REVIEW_ACTION_CODE = f"{PAS}/extension-reviewActionCode"
EXT_ITEM_PREAUTH_PERIOD = f"{PAS}/extension-itemPreAuthPeriod"
EXT_ITEM_AUTHORIZED_DETAIL = f"{PAS}/extension-itemAuthorizedDetail"
EXT_CLAIM_RESPONSE_REVIEWER = f"{PAS}/extension-claimResponseReviewer"   # PAS 2.1 and later
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
PAS_SUPPORTING_INFO_TYPE = "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASSupportingInfoType"

# ---- Da Vinci CRD and DTR -------------------------------------------------------------------------------------
CRD_COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
CRD_TEMP = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp"
DTR_QUESTIONNAIRE = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-std-questionnaire"
DTR_SD = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition"
DTR_INFORMATION_ORIGIN = f"{DTR_SD}/information-origin"
QUESTIONNAIRE_UNIT_OPTION = "http://hl7.org/fhir/StructureDefinition/questionnaire-unitOption"
DTR_PACKAGE_PARAMETER = "packagebundle"   # the $questionnaire-package output parameter (DTR 2.x)
DTR_QUESTIONNAIRE_RESPONSE = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-questionnaireresponse"

# ---- LOINC and SNOMED codes the mapping reads -----------------------------------------------------------------
LOINC_BODY_WEIGHT = "29463-7"
LOINC_DISEASE_STATUS = "97509-4"
LOINC_MEDICATION_HISTORY = "10160-0"
LOINC_PAST_ILLNESS = "11348-0"
SNOMED_CONSULTATION = "11429006"
SNOMED_DISEASE_STATUS = {"271299001": "progressive_disease", "359746009": "stable_disease", "268910001": "partial_response"}
CPT_TRANSPLANT = {"38241": "autologous_sct", "38240": "allogeneic_sct"}
CERTIFICATION_KIND = {"I": "initial", "R": "continuation", "4": "continuation"}
KIND_CERTIFICATION = {"initial": "I", "continuation": "R"}

# ---- priorauth's own codes (URNs: no domain implied) ----------------------------------------------------------
CS = "urn:priorauth:codesystem:"
EXT = "urn:priorauth:extension:"
CS_LINE_OF_BUSINESS = CS + "line-of-business"
CS_LAB_TEST = CS + "lab-test"
CS_THERAPY_INTENT = CS + "therapy-intent"
CS_STOP_REASON = CS + "therapy-stop-reason"
CS_IMWG_RESPONSE = CS + "imwg-response"
CS_IMAGING_FINDING = CS + "imaging-finding"
CS_DRUG_CLASS = CS + "drug-class"
CS_CRITERION = CS + "criterion"
CS_COVERAGE_REASON = CS + "coverage-assertion-reason"
QUESTIONNAIRE_BASE = "urn:priorauth:questionnaire:"
EXT_LINE_OF_THERAPY = EXT + "line-of-therapy"
EXT_CLINICAL_TRIAL = EXT + "given-in-clinical-trial"
EXT_REVIEWER = EXT + "claim-response-reviewer"
